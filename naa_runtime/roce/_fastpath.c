/* The bulk-transfer hot paths of the RoCEv2 endpoint, compiled: the ICRC (CRC-32 with ISA-L's
 * PCLMUL/AVX kernels), the send loop of a run of RDMA WRITE / SEND MIDDLE packets (BTH, ICRC
 * and UDP GSO sendmsg with the payload taken in place from the sender's buffer), and the
 * receive check-and-place of a GRO batch of MIDDLE packets (header, PSN sequence and ICRC of
 * each segment, payload copied into the message's target only after its segment passed).
 *
 * The pure-Python codec (naa_runtime/roce/packets.py) is the reference; the unit tests in
 * tests/unit/runtime/roce/test_fastpath.py compare these functions against it. Every loop
 * over packets runs without the GIL. The wire format is documented in
 * docs/reference/protocol.md ("On the wire").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <isa-l/crc.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define BTH_LEN 12
#define ICRC_LEN 4
#define PSN_MASK 0xFFFFFFu
#define MAX_SEGS 64 /* the kernel's UDP GSO/GRO segment limit, and the prefix-state tables' size */

/* zlib-compatible CRC-32 (reflected 0xEDB88320, pre- and post-inverted): crc32(crc32(0, a), b)
 * == crc32(0, a + b), as zlib.crc32 chains. */
static inline uint32_t crc32_chain(uint32_t crc, const unsigned char *p, size_t n) {
    return n ? crc32_gzip_refl(crc, p, (uint64_t)n) : crc;
}

static inline void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t get_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint32_t get_le32(const unsigned char *p) {
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

/* Reads a table of MAX_SEGS native-endian uint32 CRC states; -1 with an exception if the
 * object is not a bytes-like object of exactly that size. */
static int read_states(PyObject *obj, uint32_t *out) {
    Py_buffer b;
    if (PyObject_GetBuffer(obj, &b, PyBUF_SIMPLE) < 0) return -1;
    if (b.len != (Py_ssize_t)(MAX_SEGS * sizeof(uint32_t))) {
        PyBuffer_Release(&b);
        PyErr_Format(PyExc_ValueError, "states must be %d native uint32 (%d bytes)", MAX_SEGS,
                     (int)(MAX_SEGS * sizeof(uint32_t)));
        return -1;
    }
    memcpy(out, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return 0;
}

/* ------------------------------------------------------------------------------ crc32, icrc */

PyDoc_STRVAR(crc32_doc,
             "crc32(data, value=0, /) -> int\n\n"
             "CRC-32 of data continuing value, exactly as zlib.crc32 (ISA-L's kernel).");

static PyObject *fp_crc32(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned long value = 0;
    if (!PyArg_ParseTuple(args, "y*|k:crc32", &data, &value)) return NULL;
    if (value > 0xFFFFFFFFul) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "value must fit in 32 bits");
        return NULL;
    }
    uint32_t crc;
    if (data.len >= 65536) {
        Py_BEGIN_ALLOW_THREADS
        crc = crc32_chain((uint32_t)value, data.buf, (size_t)data.len);
        Py_END_ALLOW_THREADS
    } else {
        crc = crc32_chain((uint32_t)value, data.buf, (size_t)data.len);
    }
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

PyDoc_STRVAR(icrc_doc,
             "icrc(state, body, /) -> int\n\n"
             "The ICRC of a packet body (BTH first, without the ICRC), continuing `state` (the\n"
             "CRC after the LRH stand-in and the masked IP/UDP headers), with BTH byte 4\n"
             "masked to 0xFF: packets.icrc_of(state, body).");

static PyObject *fp_icrc(PyObject *self, PyObject *args) {
    unsigned long state;
    Py_buffer body;
    if (!PyArg_ParseTuple(args, "ky*:icrc", &state, &body)) return NULL;
    if (state > 0xFFFFFFFFul || body.len < 5) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_ValueError, "state must fit in 32 bits and body hold a BTH");
        return NULL;
    }
    const unsigned char *p = body.buf;
    static const unsigned char ff = 0xFF;
    uint32_t crc = crc32_chain((uint32_t)state, p, 4);
    crc = crc32_chain(crc, &ff, 1);
    crc = crc32_chain(crc, p + 5, (size_t)body.len - 5);
    PyBuffer_Release(&body);
    return PyLong_FromUnsignedLong(crc);
}

/* --------------------------------------------------------------------------------- sender */

PyDoc_STRVAR(
    send_middle_run_doc,
    "send_middle_run(fd, ip, port, op, dest_qp, first_psn, first_index, count, payload, mtu,\n"
    "                ack_every, states, per_batch, /) -> (dropped, errno)\n\n"
    "Send `count` full-MTU packets with opcode `op` (no extension headers) to ip:port on the\n"
    "UDP socket `fd`: packet i carries BTH(op, P_Key 0xFFFF, dest_qp, PSN first_psn + i,\n"
    "AckReq if (first_index + i) % ack_every == ack_every - 1) and payload[i*mtu:(i+1)*mtu],\n"
    "then its ICRC. Packets leave in GSO batches of `per_batch` (one sendmsg with UDP_SEGMENT;\n"
    "the payload is not copied in user space); packet j of a batch continues states[j] (the\n"
    "CRC state of the masked prefix with IPv4 identification j, `states` = 64 native uint32).\n"
    "Returns how many packets a failed sendmsg dropped and the errno of the last failure.");

static PyObject *fp_send_middle_run(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer ip, payload;
    PyObject *states_obj;
    unsigned int port, op;
    unsigned long dest_qp, first_psn;
    Py_ssize_t first_index, count, mtu, ack_every, per_batch;
    if (!PyArg_ParseTuple(args, "iy*IIkknny*nnOn:send_middle_run", &fd, &ip, &port, &op,
                          &dest_qp, &first_psn, &first_index, &count, &payload, &mtu,
                          &ack_every, &states_obj, &per_batch))
        return NULL;
    PyObject *result = NULL;
    uint32_t states[MAX_SEGS];
    if (read_states(states_obj, states) < 0) goto done;
    if (ip.len != 4 || port > 0xFFFF || op > 0xFF || dest_qp > PSN_MASK || first_psn > PSN_MASK) {
        PyErr_SetString(PyExc_ValueError, "bad address, port, opcode, QP number or PSN");
        goto done;
    }
    if (first_index < 0 || count < 0 || ack_every <= 0 || per_batch < 1 || per_batch > MAX_SEGS ||
        mtu <= 0 || mtu > 65000 || (mtu & 3)) {
        PyErr_SetString(PyExc_ValueError, "bad index, count, ack_every, per_batch or mtu");
        goto done;
    }
    if (count > 0 && payload.len / mtu < count) {
        PyErr_SetString(PyExc_ValueError, "payload shorter than count * mtu");
        goto done;
    }
    Py_ssize_t seg = BTH_LEN + mtu + ICRC_LEN;
    if (per_batch > 1 && seg * per_batch > 65507) {
        PyErr_SetString(PyExc_ValueError, "a GSO batch must fit in one UDP datagram");
        goto done;
    }

    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    memcpy(&to.sin_addr, ip.buf, 4);

    Py_ssize_t dropped = 0;
    int last_errno = 0;
    const unsigned char *pay = payload.buf;
    uint32_t w2_wire = (uint32_t)dest_qp;             /* FECN/BECN/resv = 0 on the wire */
    uint32_t w2_masked = 0xFF000000u | (uint32_t)dest_qp; /* byte 4 all ones in the ICRC */

    Py_BEGIN_ALLOW_THREADS
    unsigned char hdrs[MAX_SEGS][BTH_LEN];
    unsigned char crcs[MAX_SEGS][ICRC_LEN];
    struct iovec iov[MAX_SEGS * 3];
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctrl;
    Py_ssize_t sent = 0;
    while (sent < count) {
        Py_ssize_t n = count - sent < per_batch ? count - sent : per_batch;
        for (Py_ssize_t j = 0; j < n; j++) {
            Py_ssize_t k = sent + j;
            unsigned char *h = hdrs[j];
            uint32_t w3 = (uint32_t)((first_psn + (size_t)k) & PSN_MASK);
            if ((first_index + k) % ack_every == ack_every - 1) w3 |= 0x80000000u;
            h[0] = (unsigned char)op;
            h[1] = 0;
            h[2] = 0xFF;
            h[3] = 0xFF;
            put_be32(h + 4, w2_masked);
            put_be32(h + 8, w3);
            const unsigned char *p = pay + (size_t)k * (size_t)mtu;
            uint32_t crc = crc32_chain(states[j], h, BTH_LEN);
            crc = crc32_chain(crc, p, (size_t)mtu);
            put_be32(h + 4, w2_wire);
            crcs[j][0] = (unsigned char)crc;
            crcs[j][1] = (unsigned char)(crc >> 8);
            crcs[j][2] = (unsigned char)(crc >> 16);
            crcs[j][3] = (unsigned char)(crc >> 24);
            iov[3 * j].iov_base = h;
            iov[3 * j].iov_len = BTH_LEN;
            iov[3 * j + 1].iov_base = (void *)p;
            iov[3 * j + 1].iov_len = (size_t)mtu;
            iov[3 * j + 2].iov_base = crcs[j];
            iov[3 * j + 2].iov_len = ICRC_LEN;
        }
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &to;
        msg.msg_namelen = sizeof to;
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)(3 * n);
        if (n > 1) {
            memset(&ctrl, 0, sizeof ctrl);
            msg.msg_control = ctrl.buf;
            msg.msg_controllen = sizeof ctrl.buf;
            struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t gso = (uint16_t)seg;
            memcpy(CMSG_DATA(cm), &gso, sizeof gso);
        }
        int tries = 0;
        for (;;) {
            if (sendmsg(fd, &msg, 0) >= 0) break;
            if (errno == EINTR) continue;
            if ((errno == EAGAIN || errno == ENOBUFS) && tries++ < 3) {
                /* a non-blocking socket whose buffer is full: wait for room, briefly */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                (void)poll(&pfd, 1, 100);
                continue;
            }
            last_errno = errno;
            dropped += n;
            break;
        }
        sent += n;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(ni)", dropped, last_errno);
done:
    PyBuffer_Release(&ip);
    PyBuffer_Release(&payload);
    return result;
}

/* ------------------------------------------------------------------------------- receiver */

PyDoc_STRVAR(
    rx_middle_run_doc,
    "rx_middle_run(buf, nbytes, seg, first8, states, target, pos, max_run, psn, /)\n"
    "    -> (run, ackreq)\n\n"
    "Check and place the leading MIDDLE packets of a GRO batch: buf[:nbytes] holds segments\n"
    "of `seg` bytes (BTH 12 + payload + ICRC 4). Segment i is accepted while its first 8 bytes\n"
    "equal `first8` (opcode, flags, P_Key, byte 4, QP), its PSN is psn + i (24-bit), its ICRC\n"
    "verifies against states[i] (the CRC state after the masked IP/UDP prefix for IPv4\n"
    "identification i and BTH bytes 0..4; `states` = 64 native uint32, or None not to check),\n"
    "and i < max_run; its payload is then copied to target[pos + i*(seg-16):]. Stops at the\n"
    "first segment that fails (nothing of it is written). Returns how many segments were\n"
    "placed and whether any of them asked for an ACK.");

static PyObject *fp_rx_middle_run(PyObject *self, PyObject *args) {
    Py_buffer buf, first8, target;
    PyObject *states_obj;
    Py_ssize_t nbytes, seg, pos, max_run;
    unsigned long psn;
    if (!PyArg_ParseTuple(args, "y*nny*Ow*nnk:rx_middle_run", &buf, &nbytes, &seg, &first8,
                          &states_obj, &target, &pos, &max_run, &psn))
        return NULL;
    PyObject *result = NULL;
    uint32_t states[MAX_SEGS];
    int verify = states_obj != Py_None;
    if (verify && read_states(states_obj, states) < 0) goto done;
    if (first8.len != 8 || psn > PSN_MASK) {
        PyErr_SetString(PyExc_ValueError, "first8 must be 8 bytes and psn 24 bits");
        goto done;
    }
    if (nbytes < 0 || nbytes > buf.len || seg <= BTH_LEN + ICRC_LEN || pos < 0 || max_run < 0 ||
        pos > target.len) {
        PyErr_SetString(PyExc_ValueError, "bad nbytes, seg, pos or max_run");
        goto done;
    }
    Py_ssize_t width = seg - BTH_LEN - ICRC_LEN;
    Py_ssize_t count = nbytes / seg;
    if (count > MAX_SEGS) count = MAX_SEGS;
    if (count > max_run) count = max_run;
    if (count > (target.len - pos) / width) count = (target.len - pos) / width;

    const unsigned char *src = buf.buf;
    const unsigned char *f8 = first8.buf;
    unsigned char *dst = (unsigned char *)target.buf + pos;
    Py_ssize_t run = 0;
    uint32_t ackreq = 0;
    Py_BEGIN_ALLOW_THREADS
    for (; run < count; run++) {
        const unsigned char *s = src + (size_t)run * (size_t)seg;
        if (memcmp(s, f8, 8) != 0) break;
        uint32_t w3 = get_be32(s + 8);
        if ((w3 & PSN_MASK) != ((psn + (unsigned long)run) & PSN_MASK)) break;
        if (verify) {
            uint32_t crc = crc32_chain(states[run], s + 5, (size_t)(seg - 5 - ICRC_LEN));
            if (crc != get_le32(s + seg - ICRC_LEN)) break;
        }
        memcpy(dst + (size_t)run * (size_t)width, s + BTH_LEN, (size_t)width);
        ackreq |= w3;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(nO)", run, (ackreq & 0x80000000u) ? Py_True : Py_False);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&first8);
    PyBuffer_Release(&target);
    return result;
}

/* --------------------------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"crc32", fp_crc32, METH_VARARGS, crc32_doc},
    {"icrc", fp_icrc, METH_VARARGS, icrc_doc},
    {"send_middle_run", fp_send_middle_run, METH_VARARGS, send_middle_run_doc},
    {"rx_middle_run", fp_rx_middle_run, METH_VARARGS, rx_middle_run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "naa_runtime.roce._fastpath",
    "Compiled bulk paths of the RoCEv2 endpoint (ICRC, MIDDLE-run send and receive).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "MAX_SEGS", MAX_SEGS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
