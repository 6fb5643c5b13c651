"""The software NAA: RoCEv2 transport, MRSP, RPC dispatch, kernels, training core, management."""
