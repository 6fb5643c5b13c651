"""The embedded Kubernetes control plane (real apiserver, etcd, KCM, scheduler, KWOK) and the
pod runner that stands in for kubelet + container runtime on its fake nodes."""
