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
#include <math.h>

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/uio.h>
#include <time.h>

#include <isa-l/crc.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define BTH_LEN 12
#define ICRC_LEN 4
#define PSN_MASK 0xFFFFFFu
#define MAX_SEGS 64 /* the kernel's UDP GSO/GRO segment limit, and the prefix-state tables' size */
/* A receive burst acknowledges AckReq at its end, or as soon as this many packets were placed
 * since its last ACK (ACKs are cumulative: one covers every AckReq before it). */
#define ACK_SPACING 1024

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

/* The IPv4 socket address ip:port (`ip`: 4 bytes, network order). */
static struct sockaddr_in ipv4_to(const void *ip, unsigned port) {
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons((uint16_t)port);
    memcpy(&to.sin_addr, ip, 4);
    return to;
}

/* Control-message room for one UDP_SEGMENT option. */
typedef union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
} gso_ctrl;

/* `msg` set up to send `iov` (n buffers) to `to`, with UDP_SEGMENT `seg` (in `ctrl`) unless
 * `seg` is 0: what send_middle_run and send_gso send. */
static void gso_msg(struct msghdr *msg, gso_ctrl *ctrl, const struct sockaddr_in *to,
                    struct iovec *iov, size_t n, Py_ssize_t seg) {
    memset(msg, 0, sizeof *msg);
    msg->msg_name = (void *)to;
    msg->msg_namelen = sizeof *to;
    msg->msg_iov = iov;
    msg->msg_iovlen = n;
    if (seg) {
        memset(ctrl, 0, sizeof *ctrl);
        msg->msg_control = ctrl->buf;
        msg->msg_controllen = sizeof ctrl->buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(msg);
        cm->cmsg_level = SOL_UDP;
        cm->cmsg_type = UDP_SEGMENT;
        cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t g = (uint16_t)seg;
        memcpy(CMSG_DATA(cm), &g, sizeof g);
    }
}

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

    struct sockaddr_in to = ipv4_to(ip.buf, port);

    Py_ssize_t dropped = 0;
    int last_errno = 0;
    const unsigned char *pay = payload.buf;
    uint32_t w2_wire = (uint32_t)dest_qp;             /* FECN/BECN/resv = 0 on the wire */
    uint32_t w2_masked = 0xFF000000u | (uint32_t)dest_qp; /* byte 4 all ones in the ICRC */

    Py_BEGIN_ALLOW_THREADS
    unsigned char hdrs[MAX_SEGS][BTH_LEN];
    unsigned char crcs[MAX_SEGS][ICRC_LEN];
    struct iovec iov[MAX_SEGS * 3];
    gso_ctrl ctrl;
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
        gso_msg(&msg, &ctrl, &to, iov, (size_t)(3 * n), n > 1 ? seg : 0);
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

/* memcpy for payloads into a message's target: a 64 MiB write does not fit in any cache, so
 * its bytes are stored around the cache (SSE2 non-temporal stores, which also skip reading
 * each destination line before writing it); the caller issues the store fence. */
static void copy_to_target(unsigned char *d, const unsigned char *s, size_t n) {
#if defined(__SSE2__)
    /* A misaligned target takes plain memcpy: streaming all but the edge lines of each payload
     * measured slower than memcpy. */
    if (n >= 256 && ((uintptr_t)d & 15) == 0) {
        for (; n >= 64; n -= 64, d += 64, s += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)s);
            __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
            _mm_stream_si128((__m128i *)d, a);
            _mm_stream_si128((__m128i *)(d + 16), b);
            _mm_stream_si128((__m128i *)(d + 32), c);
            _mm_stream_si128((__m128i *)(d + 48), e);
        }
    }
#endif
    memcpy(d, s, n);
}

/* Checks the first `count` segments of `seg` bytes at `src` (first 8 bytes equal f8, PSN
 * psn + i, ICRC against states[i] unless states is NULL) and copies each one's payload to
 * dst + i * (seg - 16) once it passed. Returns how many passed; ORs their BTH word 3 into
 * *ackreq. No Python calls: runs without the GIL. */
static Py_ssize_t place_segments(const unsigned char *src, Py_ssize_t seg, Py_ssize_t count,
                                 const unsigned char *f8, const uint32_t *states,
                                 unsigned char *dst, uint32_t psn, uint32_t *ackreq) {
    Py_ssize_t width = seg - BTH_LEN - ICRC_LEN;
    Py_ssize_t run = 0;
    for (; run < count; run++) {
        const unsigned char *s = src + (size_t)run * (size_t)seg;
        if (memcmp(s, f8, 8) != 0) break;
        uint32_t w3 = get_be32(s + 8);
        if ((w3 & PSN_MASK) != ((psn + (uint32_t)run) & PSN_MASK)) break;
        if (states != NULL) {
            uint32_t crc = crc32_chain(states[run], s + 5, (size_t)(seg - 5 - ICRC_LEN));
            if (crc != get_le32(s + seg - ICRC_LEN)) break;
        }
        copy_to_target(dst + (size_t)run * (size_t)width, s + BTH_LEN, (size_t)width);
        *ackreq |= w3;
    }
#if defined(__SSE2__)
    if (run > 0) _mm_sfence(); /* the streamed payloads are visible before the caller goes on */
#endif
    return run;
}

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

    Py_ssize_t run;
    uint32_t ackreq = 0;
    Py_BEGIN_ALLOW_THREADS
    run = place_segments(buf.buf, seg, count, first8.buf, verify ? states : NULL,
                         (unsigned char *)target.buf + pos, (uint32_t)psn, &ackreq);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(nO)", run, (ackreq & 0x80000000u) ? Py_True : Py_False);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&first8);
    PyBuffer_Release(&target);
    return result;
}

/* Sends the 20-byte ACK `pkt` (BTH + AETH with BTH byte 4 masked, then room for the ICRC) for
 * `psn` to `to`; 0 on success, -1 with errno. */
static int send_ack(int fd, unsigned char *pkt, uint32_t state, const struct sockaddr_in *to,
                    unsigned long psn) {
    pkt[4] = 0xFF;
    put_be32(pkt + 8, (uint32_t)(psn & PSN_MASK));
    uint32_t crc = crc32_chain(state, pkt, 16);
    pkt[4] = 0;
    pkt[16] = (unsigned char)crc;
    pkt[17] = (unsigned char)(crc >> 8);
    pkt[18] = (unsigned char)(crc >> 16);
    pkt[19] = (unsigned char)(crc >> 24);
    ssize_t r;
    do {
        r = sendto(fd, pkt, 20, 0, (const struct sockaddr *)to, sizeof *to);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

enum { BURST_DRAINED = 0, BURST_PENDING = 1, BURST_ERROR = 2, BURST_ACK_OWED = 3 };

/* One non-blocking recvmsg of a datagram (a GRO batch) into buf[:len], GIL released by the
 * caller: its length (-1 with errno set: EAGAIN when nothing is there; EINTR retried), the
 * sender in *from, the GRO segment size in *gso (the length if not a batch), and whether it
 * was truncated in *trunc. */
static ssize_t recv_gro(int fd, void *buf, size_t len, struct sockaddr_in *from,
                        Py_ssize_t *gso, int *trunc) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char c[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = from;
    msg.msg_namelen = sizeof *from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.c;
    msg.msg_controllen = sizeof ctrl.c;
    ssize_t n;
    do {
        n = recvmsg(fd, &msg, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    *gso = n;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO &&
            cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int v;
            memcpy(&v, CMSG_DATA(cm), sizeof v);
            *gso = v;
        }
    }
    *trunc = (msg.msg_flags & MSG_TRUNC) != 0;
    return n;
}

PyDoc_STRVAR(
    rx_burst_doc,
    "rx_burst(fd, buf, nbytes, seg, src_ip, src_port, first8, states, target, pos, room, psn,\n"
    "         max_dgrams, ack, /) -> (placed, acks, owe, status, nbytes, seg, ip, port, done)\n\n"
    "rx_middle_run on the GRO batch buf[:nbytes] (segments of `seg` bytes from\n"
    "src_ip:src_port), then, while every segment passed and `room` (segments that may still be\n"
    "placed) is left, receive the next datagram from the UDP socket `fd` into `buf`\n"
    "(MSG_DONTWAIT, at most `max_dgrams` in all) and do the same with it, as long as it comes\n"
    "from the same address and port as a GRO batch of `seg`-byte segments. Segment k placed in\n"
    "all goes to target[pos + k*(seg-16):], with PSN psn + k.\n\n"
    "`ack` is None or (peer_ip, state, header): once a packet with AckReq was placed, send the\n"
    "20-byte ACK `header` (BTH + AETH, BTH byte 4 0xFF, PSN field filled in with the last PSN\n"
    "placed) with its ICRC continuing `state` to peer_ip:4791, at the end of the burst or as\n"
    "soon as 1024 packets were placed since the last ACK (ACKs are cumulative); with None the\n"
    "burst stops after a batch with AckReq and the caller owes the ACK.\n\n"
    "Returns (placed, acks, owe, status, nbytes, seg, ip, port, done, errno): segments placed\n"
    "in all, ACKs sent, owe (0: no ACK owed, 1: a coalesced one, 2: one at once), status\n"
    "(BURST_DRAINED: all placed, and the socket had no more or a limit was reached,\n"
    "BURST_PENDING: the last datagram was not all placed, BURST_ERROR: recvmsg failed with\n"
    "errno, BURST_ACK_OWED: stopped for the caller to send the ACK); in every case buf[:nbytes] is the last datagram received, from ip (4 bytes)\n"
    "and port, in segments of `seg` bytes, of which the first `done` were placed.");

static PyObject *fp_rx_burst(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer buf, src_ip, first8, target;
    PyObject *states_obj, *ack_obj;
    Py_ssize_t nbytes, seg, pos, room, max_dgrams;
    unsigned int src_port;
    unsigned long psn;
    if (!PyArg_ParseTuple(args, "iw*nny*Iy*Ow*nnknO:rx_burst", &fd, &buf, &nbytes, &seg, &src_ip,
                          &src_port, &first8, &states_obj, &target, &pos, &room, &psn,
                          &max_dgrams, &ack_obj))
        return NULL;
    PyObject *result = NULL;
    uint32_t states[MAX_SEGS];
    int verify = states_obj != Py_None;
    int with_ack = ack_obj != Py_None;
    unsigned char ack_pkt[20];
    uint32_t ack_state = 0;
    struct sockaddr_in ack_to;
    memset(&ack_to, 0, sizeof ack_to);
    if (verify && read_states(states_obj, states) < 0) goto done;
    if (with_ack) {
        const char *ip4, *hdr;
        Py_ssize_t ip_len, hdr_len;
        unsigned long st;
        if (!PyTuple_Check(ack_obj) ||
            !PyArg_ParseTuple(ack_obj, "y#ky#", &ip4, &ip_len, &st, &hdr, &hdr_len))
            goto done;
        if (ip_len != 4 || hdr_len != 16 || st > 0xFFFFFFFFul) {
            PyErr_SetString(PyExc_ValueError, "ack must be (4-byte address, state, 16 bytes)");
            goto done;
        }
        memcpy(ack_pkt, hdr, 16);
        ack_state = (uint32_t)st;
        ack_to = ipv4_to(ip4, 4791);
    }
    if (first8.len != 8 || psn > PSN_MASK || src_ip.len != 4 || src_port > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "bad first8, psn or source address");
        goto done;
    }
    if (nbytes < 0 || nbytes > buf.len || buf.len < 65536 || seg <= BTH_LEN + ICRC_LEN ||
        pos < 0 || room < 0 || max_dgrams < 1 || pos > target.len) {
        PyErr_SetString(PyExc_ValueError, "bad nbytes, buf, seg, pos, room or max_dgrams");
        goto done;
    }
    Py_ssize_t width = seg - BTH_LEN - ICRC_LEN;
    if (room > (target.len - pos) / width) room = (target.len - pos) / width;

    unsigned char *b = buf.buf;
    unsigned char *dst = (unsigned char *)target.buf + pos;
    const unsigned char *f8 = first8.buf;
    struct in_addr want_ip;
    memcpy(&want_ip, src_ip.buf, 4);
    uint16_t want_port = htons((uint16_t)src_port);
    Py_ssize_t placed = 0, acks = 0, cur_n = nbytes, cur_seg = seg, left_done = 0, since = 0;
    int owe = 0, status = BURST_DRAINED, err = 0, need = 0;
    struct sockaddr_in from;
    memset(&from, 0, sizeof from);
    from.sin_addr = want_ip;
    from.sin_port = want_port;

    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t dgrams = 0;
    for (;;) {
        Py_ssize_t count = cur_n / seg;
        if (count > MAX_SEGS) count = MAX_SEGS;
        if (count > room - placed) count = room - placed;
        uint32_t ackreq = 0;
        Py_ssize_t run = place_segments(b, seg, count, f8, verify ? states : NULL,
                                        dst + (size_t)placed * (size_t)width,
                                        (uint32_t)((psn + (unsigned long)placed) & PSN_MASK),
                                        &ackreq);
        placed += run;
        left_done = run;
        if (run > 0) {
            since += run;
            if (ackreq & 0x80000000u) need = 1;
            owe = need ? 2 : 1;
            if (need && with_ack && since >= ACK_SPACING) {
                if (send_ack(fd, ack_pkt, ack_state, &ack_to, psn + (unsigned long)placed - 1) < 0) {
                    status = BURST_ACK_OWED; /* the caller sends (and counts) it */
                    break;
                }
                acks++;
                owe = need = 0;
                since = 0;
            }
        }
        if (run < count || (Py_ssize_t)run * seg != cur_n) {
            status = BURST_PENDING; /* segments left over: the caller handles them */
            break;
        }
        if (need && !with_ack) {
            status = BURST_ACK_OWED;
            break;
        }
        if (++dgrams >= max_dgrams || placed >= room) break;
        Py_ssize_t gso;
        int trunc;
        ssize_t n = recv_gro(fd, b, (size_t)buf.len, &from, &gso, &trunc);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                status = BURST_ERROR;
                err = errno;
            }
            break; /* buf still holds the last batch, all of it placed */
        }
        cur_n = n;
        cur_seg = gso;
        if (from.sin_addr.s_addr != want_ip.s_addr || from.sin_port != want_port ||
            gso != seg || n < 2 * seg || trunc) {
            status = BURST_PENDING; /* not the next batch of this run: the caller's */
            left_done = 0;
            break;
        }
    }
    if (need && with_ack && status != BURST_ACK_OWED &&
        send_ack(fd, ack_pkt, ack_state, &ack_to, psn + (unsigned long)placed - 1) == 0) {
        acks++;
        owe = 0; /* cumulative: it covers every segment placed */
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(nniinny#Ini)", placed, acks, owe, status, cur_n, cur_seg,
                           (const char *)&from.sin_addr, (Py_ssize_t)4,
                           (unsigned int)ntohs(from.sin_port), left_done, err);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&src_ip);
    PyBuffer_Release(&first8);
    PyBuffer_Release(&target);
    return result;
}

/* ------------------------------------------------------------------ RPC round trip (host) */

enum { RT_OK = 0, RT_FALLBACK = 1, RT_TIMEOUT = 2, RT_ERROR = 3 };
#define RT_MAX_DGRAMS 8
#define RT_DGRAM_ROOM (65536 + 64)

static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The ICRC of the received datagram p[:n] (BTH first, ICRC last) checks against `state`. */
static int icrc_ok(const unsigned char *p, Py_ssize_t n, uint32_t state) {
    static const unsigned char ff = 0xFF;
    uint32_t crc = crc32_chain(state, p, 4);
    crc = crc32_chain(crc, &ff, 1);
    crc = crc32_chain(crc, p + 5, (size_t)(n - 5 - ICRC_LEN));
    return crc == get_le32(p + n - ICRC_LEN);
}

/* One sendmsg of `iov` to `to` (with UDP_SEGMENT `gso_seg` unless 0), GIL released by the
 * caller: 0, or the errno of the failed send. */
static int send_gso(int fd, const struct sockaddr_in *to, struct iovec *iov, size_t n,
                    Py_ssize_t gso_seg) {
    gso_ctrl sctrl;
    struct msghdr smsg;
    gso_msg(&smsg, &sctrl, to, iov, n, gso_seg);
    ssize_t sr;
    do {
        sr = sendmsg(fd, &smsg, 0);
    } while (sr < 0 && errno == EINTR);
    return sr < 0 ? errno : 0;
}

PyDoc_STRVAR(send_round_trip_doc,
             "send_round_trip(fd, ip, out, gso_seg, /) -> errno\n\n"
             "Send the finished datagram(s) `out` (one buffer, ICRCs included: what\n"
             "build_round_trip returns) to ip:4791 in one sendmsg, with UDP_SEGMENT `gso_seg`\n"
             "unless 0, without the GIL: rpc_round_trip's send, for a caller that has work to\n"
             "do while the peer answers (it then calls rpc_round_trip with no `out`). Returns 0,\n"
             "or the errno of the failed send.");

static PyObject *fp_send_round_trip(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer ip, out;
    Py_ssize_t gso_seg;
    if (!PyArg_ParseTuple(args, "iy*y*n:send_round_trip", &fd, &ip, &out, &gso_seg)) return NULL;
    PyObject *r = NULL;
    if (ip.len != 4 || gso_seg < 0 || gso_seg > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "bad address or gso");
        goto done;
    }
    struct sockaddr_in to = ipv4_to(ip.buf, 4791);
    struct iovec iov = {out.buf, (size_t)out.len};
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = send_gso(fd, &to, &iov, 1, gso_seg);
    Py_END_ALLOW_THREADS
    r = PyLong_FromLong(err);
done:
    PyBuffer_Release(&ip);
    PyBuffer_Release(&out);
    return r;
}

/* The attribute names the C steps read and write on queue pairs, interned once (PyInit__fastpath). */
#define NAMES(X)                                                                              \
    X(_lock) X(acquire) X(release) X(_fatal) X(_epsn) X(_cur_view) X(config)                  \
    X(ack_before_completion) X(mtu) X(_rq) X(memory) X(_by_rkey) X(access) X(va) X(view)      \
    X(popleft) X(wr_id) X(_msn) X(_cur_len) X(_cur_pos) X(_cur_is_send) X(_nak_sent)          \
    X(_ack_pending) X(_dqp_word) X(state) X(_una) X(_assign_psn) X(_next_psn) X(_undo)         \
    X(_backoff) X(_rnr_until) X(_cwnd) X(_ssthresh) X(window) X(_sq) X(first_psn) X(npkts)    \
    X(_hint) X(is_send) X(length) X(_retries) X(retry_count) X(_rtt_psn) X(_rtt_t0)           \
    X(_srtt) X(_rttvar) X(min_rto) X(ack_timeout) X(_deadline) X(_rto) X(inline_reply)       \
    X(send_write_imm) X(_sent_single)
#define DECLARE_NAME(n) static PyObject *s##n;
NAMES(DECLARE_NAME)

static int init_names(void) {
#define INIT_NAME(n)                                                                          \
    if ((s##n = PyUnicode_InternFromString(#n)) == NULL) return -1;
    NAMES(INIT_NAME)
    return 0;
}

/* qp._lock.acquire(False), its lock object in *lock (a new reference, or NULL): 1 taken,
 * 0 held by another thread, -1 an exception. */
static int try_lock(PyObject *qp, PyObject **lock) {
    *lock = PyObject_GetAttr(qp, s_lock);
    if (*lock == NULL) return -1;
    PyObject *res = PyObject_CallMethodOneArg(*lock, sacquire, Py_False);
    if (res == NULL) return -1;
    int t = PyObject_IsTrue(res);
    Py_DECREF(res);
    return t;
}

/* lock.release() of a QP's lock taken by the caller, the exception already set (if any)
 * kept: 0, or -1 with release's own exception if release failed. */
static int release_lock(PyObject *lock) {
    PyObject *exc_t, *exc_v, *exc_tb;
    PyErr_Fetch(&exc_t, &exc_v, &exc_tb);
    PyObject *res = PyObject_CallMethodNoArgs(lock, srelease);
    if (res == NULL) {
        Py_XDECREF(exc_t);
        Py_XDECREF(exc_v);
        Py_XDECREF(exc_tb);
        return -1;
    }
    Py_DECREF(res);
    PyErr_Restore(exc_t, exc_v, exc_tb);
    return 0;
}

/* Small helpers over the QP's attributes (GIL held). -1: an exception is set. */
static int get_ul(PyObject *o, PyObject *name, unsigned long *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    *out = PyLong_AsUnsignedLong(v);
    Py_DECREF(v);
    return (*out == (unsigned long)-1 && PyErr_Occurred()) ? -1 : 0;
}

static int get_truth(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

static int get_double(PyObject *o, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int set_double(PyObject *o, PyObject *name, double value) {
    PyObject *v = PyFloat_FromDouble(value);
    if (v == NULL) return -1;
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

/* QueuePair._sample_rtt(now) then its _set_rto() with no backoff (the caller checked
 * _backoff == 0), in C with the same double arithmetic in the same order: the Python
 * method call from C cost ~2 us of the NAA's turnaround. 0, or -1 with an exception. */
static int sample_rtt(PyObject *qp, PyObject *cfg, double now) {
    double t0, srtt, rttvar;
    if (get_double(qp, s_rtt_t0, &t0) < 0) return -1;
    double r = now - t0;
    PyObject *minus1 = PyLong_FromLong(-1);
    if (minus1 == NULL) return -1;
    int sr = PyObject_SetAttr(qp, s_rtt_psn, minus1);
    Py_DECREF(minus1);
    if (sr < 0) return -1;
    if (r < 0) return 0; /* a caller's clock other than time.monotonic (tests) */
    if (get_double(qp, s_srtt, &srtt) < 0 || get_double(qp, s_rttvar, &rttvar) < 0) return -1;
    if (srtt == 0.0) {
        srtt = r;
        rttvar = r / 2;
    } else {
        rttvar = 0.75 * rttvar + 0.25 * fabs(srtt - r);
        srtt = 0.875 * srtt + 0.125 * r;
    }
    if (set_double(qp, s_srtt, srtt) < 0 || set_double(qp, s_rttvar, rttvar) < 0) return -1;
    double ack_timeout, min_rto, rto;
    if (get_double(cfg, sack_timeout, &ack_timeout) < 0) return -1;
    if (srtt == 0.0) {
        rto = ack_timeout;
    } else {
        if (get_double(cfg, smin_rto, &min_rto) < 0) return -1;
        double base = srtt + 4 * rttvar;
        if (min_rto > base) base = min_rto; /* max(min_rto, base): min_rto on a tie */
        rto = ack_timeout < base ? ack_timeout : base; /* min(ack_timeout, base) */
    }
    return set_double(qp, s_rto, rto);
}

static int set_ul(PyObject *o, PyObject *name, unsigned long value) {
    PyObject *v = PyLong_FromUnsignedLong(value);
    if (v == NULL) return -1;
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

PyDoc_STRVAR(
    rpc_round_trip_doc,
    "rpc_round_trip(fd, ip, out, gso_seg, qpn, req_psn, epsn, ack_state, reply_state,\n"
    "               reply_len, spin_ns, timeout_ns, rxbuf, place=None, held=None,\n"
    "               sample=False, /)\n"
    "    -> (status, errno, dgrams, imm)\n\n"
    "The socket side of an RPC's round trip on the host, without the GIL: send the finished\n"
    "datagram(s) `out` (a sequence of buffers, ICRCs included; one sendmsg to ip:4791, with\n"
    "UDP_SEGMENT `gso_seg` unless 0; nothing if `out` is empty: the caller sent them with\n"
    "send_round_trip), then receive from the UDP socket `fd` (busy-polling with sched_yield\n"
    "for `spin_ns` after the send and after each datagram, then blocking in poll)\n"
    "until both of these arrived from ip:4791, in either order, each as a datagram of its own:\n"
    "  * the ACK of the request: 20 bytes, ACKNOWLEDGE, BTH byte 1 zero, valid P_Key, dest QP\n"
    "    `qpn`, PSN `req_psn`, an ACK syndrome (bits 7..5 zero), ICRC valid against\n"
    "    `ack_state`;\n"
    "  * the reply: `reply_len` bytes, RDMA_WRITE_ONLY_WITH_IMMEDIATE, TVer 0, valid P_Key,\n"
    "    dest QP `qpn`, PSN `epsn`, ICRC valid against `reply_state`\n"
    "(status RT_OK). Any other datagram ends the call with RT_FALLBACK, `timeout_ns` passing\n"
    "with RT_TIMEOUT, a failed send or receive with RT_ERROR and its errno. Nothing is\n"
    "acknowledged here. With `place` = (target, va, rkey), the reply's RETH must name exactly\n"
    "that region (address va, rkey, DMA length the target's size, the pad to match; else\n"
    "RT_FALLBACK) and on RT_OK its payload is copied into the writable buffer `target`;\n"
    "without, nothing is placed (the caller hands the datagrams to its queue pair). In every\n"
    "case but RT_OK nothing was written to `target`.\n"
    "They are kept in `rxbuf` (at least 65600 bytes), listed in `dgrams` in arrival order as\n"
    "(offset, nbytes, gro_segment, ip (4 bytes), port); `imm` is the reply's ImmDt on RT_OK,\n"
    "else -1. With `held`, a queue pair whose lock the caller took (round_trip_speculate),\n"
    "RT_OK also does QueuePair.round_trip_confirm's work at the reply's arrival: the RTT\n"
    "sample if `sample`, then the lock released (every other outcome leaves it to the\n"
    "caller's round_trip_abort).");

static PyObject *fp_rpc_round_trip(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer ip, rxbuf, target = {0};
    PyObject *out, *place = Py_None, *held = Py_None;
    Py_ssize_t gso_seg, reply_len;
    unsigned long qpn, req_psn, epsn, ack_state, reply_state;
    long long spin_ns, timeout_ns;
    int sample = 0;
    if (!PyArg_ParseTuple(args, "iy*OnkkkkknLLw*|OOp:rpc_round_trip", &fd, &ip, &out, &gso_seg,
                          &qpn, &req_psn, &epsn, &ack_state, &reply_state, &reply_len, &spin_ns,
                          &timeout_ns, &rxbuf, &place, &held, &sample))
        return NULL;
    PyObject *result = NULL, *seq = NULL;
    int placing = place != Py_None;
    unsigned long long target_va = 0;
    unsigned long target_rkey = 0;
    Py_buffer parts[8];
    Py_ssize_t nparts = 0;
    if (ip.len != 4 || qpn > PSN_MASK || req_psn > PSN_MASK || epsn > PSN_MASK ||
        ack_state > 0xFFFFFFFFul || reply_state > 0xFFFFFFFFul || gso_seg < 0 ||
        gso_seg > 0xFFFF || rxbuf.len < RT_DGRAM_ROOM || reply_len < BTH_LEN + 20 + ICRC_LEN) {
        PyErr_SetString(PyExc_ValueError, "bad address, QP number, PSN, state, gso or rxbuf");
        goto done;
    }
    if (placing) {
        if (!PyTuple_Check(place) ||
            !PyArg_ParseTuple(place, "w*Kk", &target, &target_va, &target_rkey)) {
            placing = 0;
            goto done;
        }
        if (target_rkey > 0xFFFFFFFFul ||
            reply_len != BTH_LEN + 20 + target.len + ((-target.len) & 3) + ICRC_LEN) {
            PyErr_SetString(PyExc_ValueError, "place must be (target, va, rkey) of reply_len");
            goto done;
        }
    }
    seq = PySequence_Fast(out, "out must be a sequence of buffers");
    if (seq == NULL) goto done;
    if (PySequence_Fast_GET_SIZE(seq) > 8) {
        PyErr_SetString(PyExc_ValueError, "out must hold 0 to 8 buffers");
        goto done;
    }
    for (; nparts < PySequence_Fast_GET_SIZE(seq); nparts++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, nparts), &parts[nparts],
                               PyBUF_SIMPLE) < 0)
            goto done;
    }

    struct sockaddr_in to = ipv4_to(ip.buf, 4791);
    int status = RT_OK, err = 0, got_ack = 0;
    int got_reply = 0;
    long long imm = -1;
    int64_t done_ns = 0;
    Py_ssize_t used = 0, count = 0, reply_at = 0;
    Py_ssize_t offs[RT_MAX_DGRAMS], lens[RT_MAX_DGRAMS], segs[RT_MAX_DGRAMS];
    struct sockaddr_in froms[RT_MAX_DGRAMS];
    unsigned char *rb = rxbuf.buf;

    Py_BEGIN_ALLOW_THREADS
    struct iovec iov[8];
    for (Py_ssize_t i = 0; i < nparts; i++) {
        iov[i].iov_base = parts[i].buf;
        iov[i].iov_len = (size_t)parts[i].len;
    }
    if (nparts > 0 && (err = send_gso(fd, &to, iov, (size_t)nparts, gso_seg)) != 0)
        status = RT_ERROR;
    int64_t now = mono_ns();
    int64_t deadline = now + timeout_ns, spin_until = now + spin_ns;
    while (status == RT_OK) {
        if (count == RT_MAX_DGRAMS || rxbuf.len - used < RT_DGRAM_ROOM) {
            status = RT_FALLBACK;
            break;
        }
        struct sockaddr_in from;
        Py_ssize_t gso;
        int trunc;
        ssize_t n = recv_gro(fd, rb + used, (size_t)(rxbuf.len - used), &from, &gso, &trunc);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                status = RT_ERROR;
                err = errno;
                break;
            }
            now = mono_ns();
            if (now >= deadline) {
                status = RT_TIMEOUT;
                break;
            }
            if (now < spin_until) {
                sched_yield(); /* let a peer on this CPU run: it sends what we wait for */
                continue;
            }
            int64_t left_ms = (deadline - now + 999999) / 1000000;
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            (void)poll(&pfd, 1, left_ms > 200 ? 200 : (int)left_ms);
            continue;
        }
        offs[count] = used;
        lens[count] = n;
        segs[count] = gso;
        froms[count] = from;
        count++;
        const unsigned char *p = rb + used;
        used += n;
        spin_until = mono_ns() + spin_ns;
        if (from.sin_addr.s_addr != to.sin_addr.s_addr || from.sin_port != to.sin_port ||
            gso < n || trunc || n < BTH_LEN + ICRC_LEN ||
            (p[1] & 0x0F) != 0 || (p[2] & 0x7F) != 0x7F || p[3] != 0xFF ||
            (get_be32(p + 4) & PSN_MASK) != qpn) {
            status = RT_FALLBACK;
            break;
        }
        uint32_t w3 = get_be32(p + 8);
        if (p[0] == 0x11 && n == 20 && !got_ack && p[1] == 0 && (w3 & PSN_MASK) == req_psn &&
            (p[12] & 0xE0) == 0 && icrc_ok(p, n, (uint32_t)ack_state)) {
            got_ack = 1;
        } else if (p[0] == 0x0B && n == reply_len && !got_reply && (w3 & PSN_MASK) == epsn &&
                   icrc_ok(p, n, (uint32_t)reply_state)) {
            uint64_t va = ((uint64_t)get_be32(p + 12) << 32) | get_be32(p + 16);
            if (placing && (va != (uint64_t)target_va || get_be32(p + 20) != target_rkey ||
                            (Py_ssize_t)get_be32(p + 24) != target.len ||
                            (Py_ssize_t)((p[1] >> 4) & 3) != ((-target.len) & 3))) {
                status = RT_FALLBACK; /* not the region expected: the QP's reference checks */
                break;
            }
            got_reply = 1;
            reply_at = offs[count - 1];
        } else {
            status = RT_FALLBACK;
            break;
        }
        if (got_ack && got_reply) {
            if (placing && target.len)
                memcpy(target.buf, rb + reply_at + BTH_LEN + 20, (size_t)target.len);
            imm = get_be32(rb + reply_at + BTH_LEN + 16);
            done_ns = mono_ns();
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (status == RT_OK && held != Py_None) {
        /* QueuePair.round_trip_confirm at the reply's arrival: the RTT sample, the lock
         * round_trip_speculate took released (left held, with the exception, on a failure:
         * the caller's round_trip_abort restores and releases) */
        PyObject *cfg = PyObject_GetAttr(held, sconfig), *lock = NULL;
        int bad = cfg == NULL || (sample && sample_rtt(held, cfg, (double)done_ns / 1e9) < 0) ||
                  (lock = PyObject_GetAttr(held, s_lock)) == NULL;
        Py_XDECREF(cfg);
        if (!bad) bad = release_lock(lock) < 0;
        Py_XDECREF(lock);
        if (bad) goto done;
    }
    PyObject *dgrams = PyTuple_New(count);
    if (dgrams == NULL) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *d = Py_BuildValue("(nnny#I)", offs[i], lens[i], segs[i],
                                    (const char *)&froms[i].sin_addr, (Py_ssize_t)4,
                                    (unsigned int)ntohs(froms[i].sin_port));
        if (d == NULL) {
            Py_DECREF(dgrams);
            goto done;
        }
        PyTuple_SET_ITEM(dgrams, i, d);
    }
    result = Py_BuildValue("(iiNL)", status, err, dgrams, imm);
done:
    for (Py_ssize_t i = 0; i < nparts; i++) PyBuffer_Release(&parts[i]);
    Py_XDECREF(seq);
    if (placing) PyBuffer_Release(&target);
    PyBuffer_Release(&ip);
    PyBuffer_Release(&rxbuf);
    return result;
}

/* ------------------------------------------------------- small sends and the NAA's requests */

/* The CRC state after the LRH stand-in (8 x 0xFF) and the masked IPv4 + UDP headers of a
 * datagram from src:sport to dst:dport with a UDP payload of `len` bytes and IPv4
 * identification `ip_id`: packets.prefix_state. */
static uint32_t prefix_crc(const unsigned char *src, const unsigned char *dst, unsigned sport,
                           unsigned dport, size_t len, unsigned ip_id) {
    unsigned char b[8 + 20 + 8];
    memset(b, 0xFF, 8);
    unsigned char *ip = b + 8, *udp = b + 28;
    size_t total = 20 + 8 + len;
    ip[0] = 0x45;
    ip[1] = 0xFF;
    ip[2] = (unsigned char)(total >> 8);
    ip[3] = (unsigned char)total;
    ip[4] = (unsigned char)(ip_id >> 8);
    ip[5] = (unsigned char)ip_id;
    ip[6] = 0x40;
    ip[7] = 0;
    ip[8] = 0xFF;
    ip[9] = 17;
    ip[10] = 0xFF;
    ip[11] = 0xFF;
    memcpy(ip + 12, src, 4);
    memcpy(ip + 16, dst, 4);
    udp[0] = (unsigned char)(sport >> 8);
    udp[1] = (unsigned char)sport;
    udp[2] = (unsigned char)(dport >> 8);
    udp[3] = (unsigned char)dport;
    udp[4] = (unsigned char)((8 + len) >> 8);
    udp[5] = (unsigned char)(8 + len);
    udp[6] = 0xFF;
    udp[7] = 0xFF;
    return crc32_chain(0, b, sizeof b);
}

PyDoc_STRVAR(prefix_state_doc,
             "prefix_state(src, dst, sport, dport, udp_payload_len, ip_id=0, /) -> int\n\n"
             "packets.prefix_state, compiled (src and dst: 4-byte IPv4 addresses).");

static PyObject *fp_prefix_state(PyObject *self, PyObject *args) {
    Py_buffer src, dst;
    unsigned int sport, dport, ip_id = 0;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y*y*IIn|I:prefix_state", &src, &dst, &sport, &dport, &len,
                          &ip_id))
        return NULL;
    PyObject *r = NULL;
    if (src.len != 4 || dst.len != 4 || sport > 0xFFFF || dport > 0xFFFF || ip_id > 0xFFFF ||
        len < 0 || len > 0xFFFF - 28)
        PyErr_SetString(PyExc_ValueError, "bad address, port, length or IP ID");
    else
        r = PyLong_FromUnsignedLong(
            prefix_crc(src.buf, dst.buf, sport, dport, (size_t)len, ip_id));
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return r;
}

static int send_iov(int fd, const struct sockaddr_in *to, struct iovec *iov, size_t n) {
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = (void *)to;
    msg.msg_namelen = sizeof *to;
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    ssize_t r;
    do {
        r = sendmsg(fd, &msg, 0);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? errno : 0;
}

/* The finished 20-byte packet `first` (an ACK), then iov[:n], to `to` in one sendmmsg (GIL
 * released by the caller): the errno of the second's send (0: sent), and of the first's in
 * *first_err. */
static int send_iov_after(int fd, const struct sockaddr_in *to, const unsigned char *first,
                          struct iovec *iov, size_t n, int *first_err) {
    struct iovec fiov = {(void *)first, 20};
    struct mmsghdr m[2];
    memset(m, 0, sizeof m);
    m[0].msg_hdr.msg_name = m[1].msg_hdr.msg_name = (void *)to;
    m[0].msg_hdr.msg_namelen = m[1].msg_hdr.msg_namelen = sizeof *to;
    m[0].msg_hdr.msg_iov = &fiov;
    m[0].msg_hdr.msg_iovlen = 1;
    m[1].msg_hdr.msg_iov = iov;
    m[1].msg_hdr.msg_iovlen = n;
    int r;
    do {
        r = sendmmsg(fd, m, 2, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        *first_err = errno;
        return errno;
    }
    *first_err = 0;
    return r == 2 ? 0 : send_iov(fd, to, iov, n); /* only the first went: the second alone */
}

/* One packet sent to ip:port in one sendmsg without the GIL (held on entry): the header
 * h[:hlen] (BTH first; its byte 4 is the ICRC's mask and is cleared here), payload[:n],
 * `pad` zero bytes and the ICRC, computed on from the prefix state `state`. 0, or the errno
 * of the failed send. With `ack`, that finished 20-byte packet goes first, in the same
 * sendmmsg (send_iov_after). */
static int send_packet(int fd, const void *ip, unsigned port, unsigned char *h, size_t hlen,
                       const void *payload, size_t n, size_t pad, uint32_t state,
                       const unsigned char *ack, int *ack_err) {
    static const unsigned char zeros[4] = {0, 0, 0, 0};
    uint32_t crc = crc32_chain(state, h, hlen);
    crc = crc32_chain(crc, payload, n);
    crc = crc32_chain(crc, zeros, pad);
    h[4] = 0;
    unsigned char icrc[4] = {(unsigned char)crc, (unsigned char)(crc >> 8),
                             (unsigned char)(crc >> 16), (unsigned char)(crc >> 24)};
    struct sockaddr_in to = ipv4_to(ip, port);
    struct iovec iov[4] = {{h, hlen}, {(void *)payload, n}, {(void *)zeros, pad}, {icrc, 4}};
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = ack != NULL ? send_iov_after(fd, &to, ack, iov, 4, ack_err) : send_iov(fd, &to, iov, 4);
    Py_END_ALLOW_THREADS
    return err;
}

PyDoc_STRVAR(
    send_small_doc,
    "send_small(fd, ip, port, hdr, payload, pad, state, /) -> errno\n\n"
    "Send one packet as Endpoint._transmit_now sends a single one: the ICRC continues `state`\n"
    "(the prefix state of the datagram, IP ID 0) over `hdr` (BTH byte 4 still 0xFF, its mask),\n"
    "`payload` and `pad` zero bytes; then hdr[4] is cleared (in place: `hdr` is writable) and\n"
    "hdr + payload + pad + ICRC leave in one sendmsg to ip:port, without the GIL. Returns 0, or\n"
    "the errno of the failed send.");

static PyObject *fp_send_small(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer ip, hdr, payload;
    unsigned int port;
    Py_ssize_t pad;
    unsigned long state;
    if (!PyArg_ParseTuple(args, "iy*Iw*y*nk:send_small", &fd, &ip, &port, &hdr, &payload, &pad,
                          &state))
        return NULL;
    PyObject *r = NULL;
    if (ip.len != 4 || port > 0xFFFF || hdr.len < BTH_LEN || pad < 0 || pad > 3 ||
        state > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "bad address, port, header, pad or state");
        goto done;
    }
    r = PyLong_FromLong(send_packet(fd, ip.buf, port, hdr.buf, (size_t)hdr.len, payload.buf,
                                    (size_t)payload.len, (size_t)pad, (uint32_t)state, NULL,
                                    NULL));
done:
    PyBuffer_Release(&ip);
    PyBuffer_Release(&hdr);
    PyBuffer_Release(&payload);
    return r;
}

enum { NR_NONE = 0, NR_DGRAM = 1, NR_REQUEST = 2, NR_ERROR = 3 };

#define REQ_HDR (BTH_LEN + 16 + 4) /* BTH + RETH + ImmDt */

/* A one-packet RDMA_WRITE_ONLY_WITH_IMMEDIATE of payload[:n] built (BTH: SE if `solicited`,
 * pad, P_Key 0xFFFF, `dqp_word`, AckReq, `psn`; RETH va, rkey, n; ImmDt `imm`; pad bytes;
 * the ICRC of a datagram from src_ip:src_port to ip:port, IP ID 0) and sent in one sendmsg
 * without the GIL (held on entry): 0, or the errno of the failed send. With `ack` (a
 * finished 20-byte ACK), that ACK goes first, in the same sendmmsg (its errno in *ack_err). */
static int write_imm_send(int fd, const void *ip, unsigned port, const void *src_ip,
                          unsigned src_port, uint32_t dqp_word, uint32_t psn, const void *payload,
                          size_t n, uint64_t va, uint32_t rkey, uint32_t imm, int solicited,
                          const unsigned char *ack, int *ack_err) {
    size_t pad = (size_t)((-(Py_ssize_t)n) & 3);
    unsigned char h[REQ_HDR];
    h[0] = 0x0B;
    h[1] = (unsigned char)((solicited ? 0x80 : 0) | (pad << 4));
    h[2] = 0xFF;
    h[3] = 0xFF;
    put_be32(h + 4, dqp_word);
    put_be32(h + 8, 0x80000000u | psn);
    put_be32(h + 12, (uint32_t)(va >> 32));
    put_be32(h + 16, (uint32_t)va);
    put_be32(h + 20, rkey);
    put_be32(h + 24, (uint32_t)n);
    put_be32(h + 28, imm);
    return send_packet(fd, ip, port, h, REQ_HDR, payload, n, pad,
                       prefix_crc(src_ip, ip, src_port, port, REQ_HDR + n + pad + ICRC_LEN, 0),
                       ack, ack_err);
}

PyDoc_STRVAR(
    send_write_imm_doc,
    "send_write_imm(fd, ip, port, src_ip, src_port, dqp_word, psn, payload, va, rkey, imm,\n"
    "               solicited, /) -> errno\n\n"
    "Send a one-packet RDMA_WRITE_ONLY_WITH_IMMEDIATE as QueuePair._post_single builds it and\n"
    "Endpoint._transmit_now sends it: BTH (SE if `solicited`, pad, P_Key 0xFFFF, the QP's\n"
    "`dqp_word` = 0xFF000000 | dest QP, AckReq, `psn`), RETH (va, rkey, DMA length = the\n"
    "payload's), ImmDt `imm`, the payload, pad bytes and the ICRC of a datagram from\n"
    "src_ip:src_port to ip:port (IP ID 0); one sendmsg without the GIL. Returns 0, or the\n"
    "errno of the failed send.");

static PyObject *fp_send_write_imm(PyObject *self, PyObject *args) {
    int fd, solicited;
    Py_buffer ip, src_ip, payload;
    unsigned int port, src_port;
    unsigned long dqp_word, psn, rkey, imm;
    unsigned long long va;
    if (!PyArg_ParseTuple(args, "iy*Iy*Ikky*Kkkp:send_write_imm", &fd, &ip, &port, &src_ip,
                          &src_port, &dqp_word, &psn, &payload, &va, &rkey, &imm, &solicited))
        return NULL;
    PyObject *r = NULL;
    if (ip.len != 4 || src_ip.len != 4 || port > 0xFFFF || src_port > 0xFFFF ||
        dqp_word > 0xFFFFFFFFul || psn > PSN_MASK || rkey > 0xFFFFFFFFul ||
        imm > 0xFFFFFFFFul || payload.len > 65000) {
        PyErr_SetString(PyExc_ValueError, "bad address, port, QP word, PSN, rkey, imm or size");
        goto done;
    }
    r = PyLong_FromLong(write_imm_send(fd, ip.buf, port, src_ip.buf, src_port, (uint32_t)dqp_word,
                                       (uint32_t)psn, payload.buf, (size_t)payload.len, va,
                                       (uint32_t)rkey, (uint32_t)imm, solicited, NULL, NULL));
done:
    PyBuffer_Release(&ip);
    PyBuffer_Release(&src_ip);
    PyBuffer_Release(&payload);
    return r;
}


PyDoc_STRVAR(
    build_round_trip_doc,
    "build_round_trip(req_state, ack_state, dqp_word, psn, payload, va, rkey, imm, ack_psn,\n"
    "                 aeth, /) -> bytes\n\n"
    "The datagrams Endpoint.rpc_call hands rpc_round_trip, back to back in one bytes object,\n"
    "as QueuePair.round_trip_packets and Endpoint._small_datagram build them: the request, an\n"
    "RDMA_WRITE_ONLY_WITH_IMMEDIATE (BTH: SE, pad, P_Key 0xFFFF, the QP's `dqp_word`, AckReq,\n"
    "`psn`; RETH: va, rkey, DMA length = the payload's; ImmDt `imm`; payload, pad, ICRC from\n"
    "the prefix state `req_state`), then, unless `ack_psn` is negative, the ACK (BTH with PSN\n"
    "`ack_psn`, AETH `aeth`, ICRC from `ack_state`); BTH byte 4 cleared in both.");

static PyObject *fp_build_round_trip(PyObject *self, PyObject *args) {
    unsigned long req_state, ack_state, dqp_word, psn, rkey, imm, aeth;
    unsigned long long va;
    long ack_psn;
    Py_buffer payload;
    if (!PyArg_ParseTuple(args, "kkkky*Kkklk:build_round_trip", &req_state, &ack_state,
                          &dqp_word, &psn, &payload, &va, &rkey, &imm, &ack_psn, &aeth))
        return NULL;
    PyObject *r = NULL;
    if (req_state > 0xFFFFFFFFul || ack_state > 0xFFFFFFFFul || dqp_word > 0xFFFFFFFFul ||
        psn > PSN_MASK || rkey > 0xFFFFFFFFul || imm > 0xFFFFFFFFul || ack_psn > PSN_MASK ||
        aeth > 0xFFFFFFFFul || payload.len > 65000) {
        PyErr_SetString(PyExc_ValueError, "bad state, QP word, PSN, rkey, imm, AETH or size");
        goto done;
    }
    size_t n = (size_t)payload.len, pad = (size_t)((-payload.len) & 3);
    size_t req_len = REQ_HDR + n + pad + ICRC_LEN;
    r = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(req_len + (ack_psn >= 0 ? 20 : 0)));
    if (r == NULL) goto done;
    unsigned char *h = (unsigned char *)PyBytes_AS_STRING(r);
    h[0] = 0x0B;
    h[1] = (unsigned char)(0x80 | (pad << 4));
    h[2] = 0xFF;
    h[3] = 0xFF;
    put_be32(h + 4, (uint32_t)dqp_word);
    put_be32(h + 8, 0x80000000u | (uint32_t)psn);
    put_be32(h + 12, (uint32_t)(va >> 32));
    put_be32(h + 16, (uint32_t)va);
    put_be32(h + 20, (uint32_t)rkey);
    put_be32(h + 24, (uint32_t)n);
    put_be32(h + 28, (uint32_t)imm);
    memcpy(h + REQ_HDR, payload.buf, n);
    memset(h + REQ_HDR + n, 0, pad);
    uint32_t crc = crc32_chain((uint32_t)req_state, h, REQ_HDR + n + pad);
    h[4] = 0;
    unsigned char *c = h + req_len - ICRC_LEN;
    c[0] = (unsigned char)crc;
    c[1] = (unsigned char)(crc >> 8);
    c[2] = (unsigned char)(crc >> 16);
    c[3] = (unsigned char)(crc >> 24);
    if (ack_psn >= 0) {
        unsigned char *a = h + req_len;
        a[0] = 0x11;
        a[1] = 0;
        a[2] = 0xFF;
        a[3] = 0xFF;
        put_be32(a + 4, (uint32_t)dqp_word);
        put_be32(a + 8, (uint32_t)ack_psn);
        put_be32(a + 12, (uint32_t)aeth);
        crc = crc32_chain((uint32_t)ack_state, a, 16);
        a[4] = 0;
        a[16] = (unsigned char)crc;
        a[17] = (unsigned char)(crc >> 8);
        a[18] = (unsigned char)(crc >> 16);
        a[19] = (unsigned char)(crc >> 24);
    }
done:
    PyBuffer_Release(&payload);
    return r;
}

/* MemoryTable.resolve(rkey=rkey, va=va, length=n) of the QP's `memory`, in C: the region of
 * that rkey, with REMOTE_WRITE access, holding [va, va + n). 1 with the region's view
 * exported into *out and the offset in *start; 0 where resolve would raise (the per-packet
 * path then refuses and counts); -1 an exception. */
static int resolve_region(PyObject *mem, uint32_t rkey, uint64_t va, Py_ssize_t n,
                          Py_buffer *out, Py_ssize_t *start) {
    int r = -1;
    PyObject *by = NULL, *key = NULL, *v = NULL;
    by = PyObject_GetAttr(mem, s_by_rkey);
    if (by == NULL || !PyDict_Check(by)) goto done;
    key = PyLong_FromUnsignedLong(rkey);
    if (key == NULL) goto done;
    PyObject *mr = PyDict_GetItemWithError(by, key); /* borrowed */
    if (mr == NULL) {
        r = PyErr_Occurred() ? -1 : 0; /* no region with that rkey */
        goto done;
    }
    Py_INCREF(mr);
    v = PyObject_GetAttr(mr, saccess);
    long access = v ? PyLong_AsLong(v) : -1;
    Py_CLEAR(v);
    if (access == -1 && PyErr_Occurred()) goto drop_mr;
    if (!(access & 2)) { /* Access.REMOTE_WRITE */
        r = 0;
        goto drop_mr;
    }
    v = PyObject_GetAttr(mr, sva);
    if (v == NULL) goto drop_mr;
    unsigned long long mva = PyLong_AsUnsignedLongLong(v);
    Py_CLEAR(v);
    if (mva == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* a va beyond 64 bits: the reference decides */
        r = 0;
        goto drop_mr;
    }
    v = PyObject_GetAttr(mr, sview);
    if (v == NULL) goto drop_mr;
    if (PyObject_GetBuffer(v, out, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        r = 0;
        goto drop_mr;
    }
    if (va < mva || va - mva > (uint64_t)out->len || (uint64_t)n > (uint64_t)out->len - (va - mva)) {
        PyBuffer_Release(out);
        r = 0; /* outside the region */
        goto drop_mr;
    }
    *start = (Py_ssize_t)(va - mva);
    r = 1;
drop_mr:
    Py_DECREF(mr);
done:
    Py_XDECREF(by);
    Py_XDECREF(key);
    Py_XDECREF(v);
    return r;
}

/* The request's QP state machine step, as QueuePair._on_request takes it for a one-packet
 * RDMA_WRITE_ONLY_WITH_IMMEDIATE in sequence whose ACK goes out before its completion: 1
 * done (payload placed, state committed, *wr_id, *msn set), 0 not the common case (nothing
 * changed; the per-packet path takes the datagram), -1 an exception. The QP's lock is taken
 * without blocking (0 if another thread holds it). */
static int request_step(PyObject *qp, const unsigned char *p, Py_ssize_t body, uint32_t psn,
                        PyObject **wr_id, unsigned long *msn_out) {
    int r = 0, locked = 0;
    PyObject *lock = NULL, *rq = NULL, *cfg = NULL, *mem = NULL, *recv = NULL;
    unsigned long v;
    locked = try_lock(qp, &lock);
    if (locked < 0) goto fail;
    if (!locked) goto out; /* another thread is in the QP: the reference path waits for it */
    int t;
    if ((t = get_truth(qp, s_fatal)) != 0) {
        if (t < 0) goto fail;
        goto out;
    }
    if (get_ul(qp, s_epsn, &v) < 0) goto fail;
    if (v != psn) goto out; /* a duplicate or a gap */
    PyObject *cur = PyObject_GetAttr(qp, s_cur_view);
    if (cur == NULL) goto fail;
    int busy = cur != Py_None;
    Py_DECREF(cur);
    if (busy) goto out;
    cfg = PyObject_GetAttr(qp, sconfig);
    if (cfg == NULL) goto fail;
    if ((t = get_truth(cfg, sack_before_completion)) != 1) {
        if (t < 0) goto fail;
        goto out;
    }
    unsigned long mtu;
    if (get_ul(cfg, smtu, &mtu) < 0) goto fail;
    Py_ssize_t pad = (p[1] >> 4) & 3;
    Py_ssize_t n = body - pad - REQ_HDR;
    uint64_t va = ((uint64_t)get_be32(p + 12) << 32) | get_be32(p + 16);
    uint32_t rkey = get_be32(p + 20), dma_len = get_be32(p + 24);
    if (n <= 0 || (Py_ssize_t)dma_len != n || (unsigned long)n > mtu) goto out;
    rq = PyObject_GetAttr(qp, s_rq);
    if (rq == NULL) goto fail;
    Py_ssize_t queued = PyObject_Size(rq);
    if (queued < 0) goto fail;
    if (queued == 0) goto out; /* RNR: the reference path NAKs */
    mem = PyObject_GetAttr(qp, smemory);
    if (mem == NULL) goto fail;
    Py_buffer tb;
    Py_ssize_t start = 0;
    /* out of the region, wrong rkey, not writable: the reference path refuses and counts */
    if ((t = resolve_region(mem, rkey, va, n, &tb, &start)) != 1) {
        if (t < 0) goto fail;
        goto out;
    }
    /* every check passed: place, then commit as _on_request + _finish_message leave it */
    memcpy((unsigned char *)tb.buf + start, p + REQ_HDR, (size_t)n);
    PyBuffer_Release(&tb);
    recv = PyObject_CallMethodNoArgs(rq, spopleft);
    if (recv == NULL) goto fail;
    *wr_id = PyObject_GetAttr(recv, swr_id);
    if (*wr_id == NULL) goto fail;
    unsigned long msn;
    if (get_ul(qp, s_msn, &msn) < 0) goto fail;
    msn = (msn + 1) & PSN_MASK;
    if (set_ul(qp, s_msn, msn) < 0 || set_ul(qp, s_cur_len, (unsigned long)n) < 0 ||
        set_ul(qp, s_cur_pos, (unsigned long)n) < 0 ||
        PyObject_SetAttr(qp, s_cur_is_send, Py_False) < 0 ||
        set_ul(qp, s_epsn, (psn + 1) & PSN_MASK) < 0 ||
        PyObject_SetAttr(qp, s_nak_sent, Py_False) < 0 ||
        PyObject_SetAttr(qp, s_ack_pending, Py_False) < 0)
        goto fail;
    *msn_out = msn;
    r = 1;
    goto out;
fail:
    r = -1;
out:
    if (locked > 0 && release_lock(lock) < 0) r = -1;
    if (r != 1 && *wr_id != NULL) Py_CLEAR(*wr_id);
    Py_XDECREF(lock);
    Py_XDECREF(rq);
    Py_XDECREF(cfg);
    Py_XDECREF(mem);
    Py_XDECREF(recv);
    return r;
}

static inline long psn_diff24(unsigned long a, unsigned long b) {
    long d = (long)((a - b) & PSN_MASK);
    return d >= 0x800000 ? d - 0x1000000 : d;
}

PyDoc_STRVAR(
    ack_step_doc,
    "ack_step(qp, psn, aeth, now, /) -> tuple | None\n\n"
    "QueuePair.on_packet for a plain ACK (AETH syndrome class ACK) of `psn` at time `now`,\n"
    "compiled, in the common case: the QP ready to send, not in error, no RNR wait, no timeout\n"
    "backoff or window undo pending, `psn` acknowledging at least one packet not yet\n"
    "acknowledged and nothing left to send afterwards. The acknowledged work requests are\n"
    "retired and una, the window, the retry count, the RTT estimate (as qp._sample_rtt) and the\n"
    "retransmit deadline updated as _on_ack/_ack_through update them; returns the retired\n"
    "WRs as ((wr_id, is_send, length), ...) for their completions. None, changing nothing,\n"
    "for anything else (a NAK, a duplicate, the QP's lock held by another thread, ...): the\n"
    "per-packet path takes the ACK.");

static PyObject *fp_ack_step(PyObject *self, PyObject *args) {
    PyObject *qp, *nowobj;
    unsigned long psn, aeth;
    if (!PyArg_ParseTuple(args, "OkkO!:ack_step", &qp, &psn, &aeth, &PyFloat_Type, &nowobj))
        return NULL;
    if (psn > PSN_MASK) {
        PyErr_SetString(PyExc_ValueError, "bad PSN");
        return NULL;
    }
    if (((aeth >> 24) & 0xE0) != 0) Py_RETURN_NONE; /* a NAK or RNR NAK: the reference */
    PyObject *result = NULL, *lock = NULL, *cfg = NULL, *sq = NULL, *retired = NULL;
    PyObject *cwnd = NULL, *ss = NULL, *win = NULL, *x = NULL, *v = NULL, *res;
    int locked = 0, t;
    unsigned long una, assign, next, rtt_psn;
    locked = try_lock(qp, &lock);
    if (locked < 0) goto fail;
    if (!locked) goto fallback;
    unsigned long st, backoff;
    if (get_ul(qp, sstate, &st) < 0) goto fail;
    if (st != 3) goto fallback; /* QpState.RTS */
    v = PyObject_GetAttr(qp, s_undo);
    if (v == NULL) goto fail;
    if (v != Py_None) goto fallback;
    Py_CLEAR(v);
    v = PyObject_GetAttr(qp, s_rnr_until);
    if (v == NULL) goto fail;
    if (v != Py_None) goto fallback;
    Py_CLEAR(v);
    if (get_ul(qp, s_backoff, &backoff) < 0) goto fail;
    if (backoff != 0) goto fallback;
    if (get_ul(qp, s_una, &una) < 0 || get_ul(qp, s_assign_psn, &assign) < 0 ||
        get_ul(qp, s_next_psn, &next) < 0)
        goto fail;
    long d_new = psn_diff24(psn, una);
    if (d_new < 0 || psn_diff24(psn, assign) >= 0) goto fallback; /* a duplicate, or beyond */
    unsigned long new_una = (psn + 1) & PSN_MASK;
    unsigned long new_next = psn_diff24(next, new_una) < 0 ? new_una : next;
    if (new_next != assign) goto fallback; /* _pump would send: the reference */
    /* every check passed: _ack_through(psn) */
    cfg = PyObject_GetAttr(qp, sconfig);
    if (cfg == NULL) goto fail;
    win = PyObject_GetAttr(cfg, swindow);
    cwnd = PyObject_GetAttr(qp, s_cwnd);
    ss = PyObject_GetAttr(qp, s_ssthresh);
    sq = PyObject_GetAttr(qp, s_sq);
    if (win == NULL || cwnd == NULL || ss == NULL || sq == NULL) goto fail;
    retired = PyList_New(0);
    if (retired == NULL) goto fail;
    if (set_ul(qp, s_una, new_una) < 0) goto fail;
    PyObject *acked = PyLong_FromLong(d_new + 1);
    if (acked == NULL) goto fail;
    if ((t = PyObject_RichCompareBool(cwnd, ss, Py_LT)) < 0) {
        Py_DECREF(acked);
        goto fail;
    }
    if (t) {
        x = PyNumber_Add(cwnd, acked); /* cwnd + acked */
    } else {
        /* cwnd + 16.0 * acked / cwnd */
        PyObject *k = PyFloat_FromDouble(16.0 * (double)(d_new + 1));
        PyObject *q = k ? PyNumber_TrueDivide(k, cwnd) : NULL;
        x = q ? PyNumber_Add(cwnd, q) : NULL;
        Py_XDECREF(k);
        Py_XDECREF(q);
    }
    Py_DECREF(acked);
    if (x == NULL) goto fail;
    /* min(window, x): x only if it is smaller */
    if ((t = PyObject_RichCompareBool(x, win, Py_LT)) < 0) goto fail;
    if (PyObject_SetAttr(qp, s_cwnd, t ? x : win) < 0) goto fail;
    unsigned long hint;
    if (get_ul(qp, s_hint, &hint) < 0) goto fail;
    for (;;) {
        Py_ssize_t len = PyObject_Size(sq);
        if (len < 0) goto fail;
        if (len == 0) break;
        PyObject *w = PySequence_GetItem(sq, 0);
        if (w == NULL) goto fail;
        unsigned long first, npkts;
        if (get_ul(w, sfirst_psn, &first) < 0 || get_ul(w, snpkts, &npkts) < 0) {
            Py_DECREF(w);
            goto fail;
        }
        if (psn_diff24(new_una, (first + npkts) & PSN_MASK) < 0) {
            Py_DECREF(w);
            break;
        }
        PyObject *wid = PyObject_GetAttr(w, swr_id);
        PyObject *isq = wid ? PyObject_GetAttr(w, sis_send) : NULL;
        PyObject *ln = isq ? PyObject_GetAttr(w, slength) : NULL;
        PyObject *item = ln ? PyTuple_Pack(3, wid, isq, ln) : NULL;
        Py_XDECREF(wid);
        Py_XDECREF(isq);
        Py_XDECREF(ln);
        Py_DECREF(w);
        if (item == NULL) goto fail;
        int ar = PyList_Append(retired, item);
        Py_DECREF(item);
        if (ar < 0) goto fail;
        res = PyObject_CallMethodNoArgs(sq, spopleft);
        if (res == NULL) goto fail;
        Py_DECREF(res);
        if (hint > 0) hint--;
    }
    if (set_ul(qp, s_hint, hint) < 0) goto fail;
    /* _undo is None (checked); next_psn, the retries; _backoff is 0 (checked) */
    if (new_next != next && set_ul(qp, s_next_psn, new_next) < 0) goto fail;
    v = PyObject_GetAttr(cfg, sretry_count);
    if (v == NULL || PyObject_SetAttr(qp, s_retries, v) < 0) goto fail;
    Py_CLEAR(v);
    /* _on_ack: the RTT sample, the deadline; _pump has nothing to send (checked) */
    v = PyObject_GetAttr(qp, s_rtt_psn);
    if (v == NULL) goto fail;
    long rp = PyLong_AsLong(v);
    Py_CLEAR(v);
    if (rp == -1 && PyErr_Occurred()) goto fail;
    rtt_psn = (unsigned long)rp;
    if (rp >= 0 && psn_diff24(new_una, rtt_psn) > 0) {
        if (sample_rtt(qp, cfg, PyFloat_AS_DOUBLE(nowobj)) < 0) goto fail;
    }
    if (new_una == new_next) {
        if (PyObject_SetAttr(qp, s_deadline, Py_None) < 0) goto fail;
    } else {
        v = PyObject_GetAttr(qp, s_rto);
        if (v == NULL) goto fail;
        PyObject *dl = PyNumber_Add(nowobj, v);
        Py_CLEAR(v);
        if (dl == NULL) goto fail;
        int sr = PyObject_SetAttr(qp, s_deadline, dl);
        Py_DECREF(dl);
        if (sr < 0) goto fail;
    }
    result = PyList_AsTuple(retired);
    goto out;
fallback:
    result = Py_NewRef(Py_None);
    goto out;
fail:
    result = NULL;
out:
    if (locked > 0 && release_lock(lock) < 0) Py_CLEAR(result);
    Py_XDECREF(lock);
    Py_XDECREF(cfg);
    Py_XDECREF(sq);
    Py_XDECREF(retired);
    Py_XDECREF(cwnd);
    Py_XDECREF(ss);
    Py_XDECREF(win);
    Py_XDECREF(x);
    Py_XDECREF(v);
    return result;
}

/* "a.b.c.d" of a 4-byte IPv4 address, as socket.inet_ntoa writes it (out: 16 bytes). */
static void format_ipv4(const unsigned char *a, char *out) {
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100) *out++ = (char)('0' + v / 100);
        if (v >= 10) *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

/* An RPC reply that the QP's `inline_reply` hook makes for a request naa_receive just took
 * (ImmDt `imm`), sent here as QueuePair.post_reply sends it in its common case, right behind
 * the request's ACK `ack` (finished, not yet sent: it leaves in every case, first, in the
 * same sendmmsg as the reply or alone before this returns; its errno in *aerr). Returns a new
 * reference: None (the hook declined: the caller reports the request as before), True (the
 * hook took the request whole), or (plan, err) with the hook's
 * plan = (wr_id, view, va, rkey, reply_imm, recv_wr_id) and err -1 when the reply is not
 * post_reply's common case here (the caller posts it), else the errno of its send (0: sent,
 * and recorded as post_reply records it: _sent_single, lock held); NULL with an exception. */
static PyObject *inline_reply(PyObject *qp, PyObject *hook, int fd, const struct sockaddr_in *to,
                              const void *local_ip, unsigned local_port, uint32_t imm,
                              const unsigned char *ack, int *aerr) {
    PyObject *plan = NULL, *lock = NULL, *res = NULL, *send = NULL, *rnr = NULL, *cfg = NULL;
    long err = -1;
    int locked = 0, have_buf = 0, ack_sent = 0;
    Py_buffer pb;
    unsigned long st, assign, next, una, mtu, rkey, rimm, dqp_word;
    unsigned long long va;
    double cwnd;
    PyObject *imm_o = PyLong_FromUnsignedLong(imm);
    if (imm_o == NULL) goto out;
    plan = PyObject_CallOneArg(hook, imm_o);
    Py_DECREF(imm_o);
    if (plan == NULL || !PyTuple_Check(plan)) goto out; /* None, True (or an exception) */
    if (PyTuple_GET_SIZE(plan) != 6) {
        PyErr_SetString(PyExc_TypeError, "inline_reply must return None, True or a 6-tuple");
        goto fail;
    }
    PyObject *view = PyTuple_GET_ITEM(plan, 1);
    locked = try_lock(qp, &lock);
    if (locked < 0) goto fail;
    if (!locked) goto out; /* another thread is in the QP: post_reply waits for it */
    /* post_reply's common case: the endpoint sends it in C, one packet, nothing queued, room
     * in the window */
    send = PyObject_GetAttr(qp, ssend_write_imm);
    if (send == NULL) goto fail;
    if (send == Py_None) goto out;
    if (get_ul(qp, sstate, &st) < 0 || get_ul(qp, s_assign_psn, &assign) < 0 ||
        get_ul(qp, s_next_psn, &next) < 0 || get_ul(qp, s_una, &una) < 0 ||
        get_double(qp, s_cwnd, &cwnd) < 0 || get_ul(qp, s_dqp_word, &dqp_word) < 0)
        goto fail;
    rnr = PyObject_GetAttr(qp, s_rnr_until);
    if (rnr == NULL) goto fail;
    if (st != 3 /* RTS */ || next != assign || rnr != Py_None ||
        psn_diff24(assign, una) >= (long)cwnd)
        goto out;
    cfg = PyObject_GetAttr(qp, sconfig);
    if (cfg == NULL || get_ul(cfg, smtu, &mtu) < 0) goto fail;
    if (PyObject_GetBuffer(view, &pb, PyBUF_FORMAT | PyBUF_ND) < 0) {
        PyErr_Clear(); /* not contiguous bytes: post_reply's general path */
        goto out;
    }
    have_buf = 1;
    va = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(plan, 2));
    if (va == (unsigned long long)-1 && PyErr_Occurred()) goto fail;
    rkey = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(plan, 3));
    if (rkey == (unsigned long)-1 && PyErr_Occurred()) goto fail;
    rimm = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(plan, 4));
    if (rimm == (unsigned long)-1 && PyErr_Occurred()) goto fail;
    if (pb.ndim != 1 || (pb.format != NULL && strcmp(pb.format, "B") != 0) ||
        (unsigned long)pb.len > mtu || rkey > 0xFFFFFFFFul || rimm > 0xFFFFFFFFul)
        goto out;
    double now = (double)mono_ns() / 1e9; /* time.monotonic(): CLOCK_MONOTONIC */
    err = write_imm_send(fd, &to->sin_addr, 4791, local_ip, local_port, (uint32_t)dqp_word,
                         (uint32_t)assign, pb.buf, (size_t)pb.len, va, (uint32_t)rkey,
                         (uint32_t)rimm, 1, ack, aerr);
    ack_sent = 1;
    PyObject *now_o = PyFloat_FromDouble(now);
    if (now_o == NULL) goto fail;
    res = PyObject_CallMethodObjArgs(qp, s_sent_single, PyTuple_GET_ITEM(plan, 0), Py_False,
                                     view, PyTuple_GET_ITEM(plan, 2), PyTuple_GET_ITEM(plan, 3),
                                     PyTuple_GET_ITEM(plan, 4), Py_True, now_o, NULL);
    Py_DECREF(now_o);
    if (res == NULL) goto fail;
    Py_CLEAR(res);
    goto out;
fail:
    Py_CLEAR(plan);
out:
    if (have_buf) PyBuffer_Release(&pb);
    if (locked > 0 && release_lock(lock) < 0) Py_CLEAR(plan);
    Py_XDECREF(lock);
    Py_XDECREF(send);
    Py_XDECREF(rnr);
    Py_XDECREF(cfg);
    if (!ack_sent) { /* the ACK alone, before the caller posts anything */
        struct iovec aiov = {(void *)ack, 20};
        Py_BEGIN_ALLOW_THREADS
        *aerr = send_iov(fd, to, &aiov, 1);
        Py_END_ALLOW_THREADS
    }
    if (plan == NULL || !PyTuple_Check(plan)) return plan;
    return Py_BuildValue("(Nl)", plan, err);
}

PyDoc_STRVAR(
    naa_receive_doc,
    "naa_receive(fd, wake_fd, timeout_ms, spin_ns, buf, qps, local_ip, local_port,\n"
    "            reply=False, /)\n"
    "    -> (status, nbytes, seg, ip, port, wake, request)\n\n"
    "One step of an NAA's receive loop, compiled. Without the GIL: busy-poll the UDP socket\n"
    "`fd` and the wake-up socket `wake_fd` for `spin_ns` (sched_yield between tries), then\n"
    "wait in poll() up to `timeout_ms`, and receive one datagram (a GRO batch) into `buf`.\n"
    "status NR_NONE: nothing arrived (`wake` tells whether wake_fd is readable; it is not\n"
    "read here); NR_ERROR: the receive failed (errno in `nbytes`); NR_DGRAM: the datagram\n"
    "(nbytes, GRO segment size `seg`, source ip (4 bytes) and port) is in buf for the\n"
    "per-packet path; NR_REQUEST: its first segment was an RPC request of the common case and\n"
    "was taken here, as Endpoint._on_datagram and QueuePair._on_request take it: an\n"
    "RDMA_WRITE_ONLY_WITH_IMMEDIATE (TVer 0, valid P_Key, AckReq) whose ICRC verifies, for a QP\n"
    "of `qps` (the endpoint's {qpn: (qp, peer ip)}) from its peer, not in error, at the\n"
    "expected PSN, no message in progress, a receive posted, ACK before completion, a payload\n"
    "of 1..MTU bytes equal to the RETH's DMA length that `qp.memory.resolve` maps; the payload\n"
    "is placed, the QP's responder state committed (PSN, MSN, receive consumed) and its ACK\n"
    "sent (without the GIL). `request` is then (qp, wr_id, imm, length, BTH byte 1, errno of\n"
    "the ACK's send, ack_psn, ack_aeth, reply); the per-packet path goes on with the datagram's\n"
    "further segments (from index 1). ack_psn >= 0: the datagram's only further segment is a\n"
    "20-byte ACK for that QP (TVer 0, valid P_Key, ICRC verified) of that PSN and AETH, for\n"
    "`ack_step` (-1 otherwise). Anything else leaves the QP untouched and returns NR_DGRAM.\n"
    "`reply` is None unless `reply` is true and the QP has an `inline_reply` hook: then the\n"
    "hook is called with the ImmDt right after the ACK and `reply` is what it made of it:\n"
    "None (declined: report the request as before), True (taken whole), or (plan, err): the\n"
    "hook's plan (wr_id, view, va, rkey, reply_imm, recv_wr_id) and err -1 if its reply (one\n"
    "RDMA WRITE WITH IMMEDIATE of view to va/rkey, SE) was not QueuePair.post_reply's common\n"
    "case here (the caller posts it), else the errno of its send (0: sent and recorded by\n"
    "QueuePair._sent_single, as post_reply records it). The receive `recv_wr_id` is the\n"
    "caller's to post.");

static PyObject *fp_naa_receive(PyObject *self, PyObject *args) {
    int fd, wake_fd, timeout_ms;
    long long spin_ns;
    Py_buffer buf, local_ip;
    PyObject *qps;
    unsigned int local_port;
    int reply_ok = 0;
    if (!PyArg_ParseTuple(args, "iiiLw*O!y*I|p:naa_receive", &fd, &wake_fd, &timeout_ms,
                          &spin_ns, &buf, &PyDict_Type, &qps, &local_ip, &local_port, &reply_ok))
        return NULL;
    PyObject *result = NULL, *wr_id = NULL;
    if (local_ip.len != 4 || local_port > 0xFFFF || buf.len < 64) {
        PyErr_SetString(PyExc_ValueError, "bad local address or buffer");
        goto done;
    }
    unsigned char *b = buf.buf;
    struct sockaddr_in from;
    memset(&from, 0, sizeof from);
    ssize_t n = -1;
    int wake = 0, err = 0;
    Py_ssize_t gso = 0;
    int trunc = 0;

    Py_BEGIN_ALLOW_THREADS
    struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
    int64_t spin_until = spin_ns > 0 ? mono_ns() + spin_ns : 0;
    int waited = 0;
    for (;;) {
        n = recv_gro(fd, b, (size_t)buf.len, &from, &gso, &trunc);
        if (n >= 0) break;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            err = errno;
            break;
        }
        if (waited) break; /* poll said ready or timed out, and nothing is there */
        int64_t now = spin_until ? mono_ns() : 0;
        int rc = poll(pfd, 2, now < spin_until ? 0 : timeout_ms);
        if (rc > 0 && (pfd[1].revents & POLLIN)) {
            wake = 1;
            waited = 1; /* one more try at the socket, then back to the caller */
            continue;
        }
        if (now < spin_until && rc == 0) {
            sched_yield(); /* let a peer on this CPU run: it sends what we wait for */
            continue;
        }
        waited = 1;
    }
    Py_END_ALLOW_THREADS

    if (n < 0) {
        result = Py_BuildValue("(inniiiO)", err ? NR_ERROR : NR_NONE, (Py_ssize_t)err,
                               (Py_ssize_t)0, 0, 0, wake, Py_None);
        goto done;
    }
    Py_ssize_t seglen = (gso > 0 && gso < n) ? gso : n;
    int status = NR_DGRAM;
    PyObject *req = Py_None;
    const unsigned char *p = b;
    uint32_t w3 = seglen >= BTH_LEN ? get_be32(p + 8) : 0;
    if (!trunc && seglen >= REQ_HDR + 1 + ICRC_LEN && p[0] == 0x0B && (p[1] & 0x0F) == 0 &&
        (p[2] & 0x7F) == 0x7F && p[3] == 0xFF && (w3 & 0x80000000u) &&
        icrc_ok(p, seglen,
                prefix_crc((const unsigned char *)&from.sin_addr, local_ip.buf,
                           ntohs(from.sin_port), local_port, (size_t)seglen, 0))) {
        uint32_t qpn = get_be32(p + 4) & PSN_MASK;
        PyObject *key = PyLong_FromUnsignedLong(qpn);
        if (key == NULL) goto done;
        PyObject *entry = PyDict_GetItemWithError(qps, key); /* borrowed */
        Py_DECREF(key);
        if (entry == NULL && PyErr_Occurred()) goto done;
        char ipstr[INET_ADDRSTRLEN];
        const unsigned char *a = (const unsigned char *)&from.sin_addr;
        format_ipv4(a, ipstr);
        if (entry != NULL && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 2 &&
            PyUnicode_Check(PyTuple_GET_ITEM(entry, 1)) &&
            PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(entry, 1), ipstr) == 0) {
            PyObject *qp = PyTuple_GET_ITEM(entry, 0);
            Py_INCREF(qp);
            unsigned long msn = 0, dqp_word = 0;
            uint32_t psn = w3 & PSN_MASK;
            int step = request_step(qp, p, seglen - ICRC_LEN, psn, &wr_id, &msn);
            if (step == 1 && get_ul(qp, s_dqp_word, &dqp_word) < 0) step = -1;
            if (step < 0) {
                Py_DECREF(qp);
                goto done;
            }
            if (step == 1) {
                /* the ACK, as QueuePair._send_ack builds it and Endpoint sends it */
                unsigned char ack[20 + ICRC_LEN];
                ack[0] = 0x11;
                ack[1] = 0;
                ack[2] = 0xFF;
                ack[3] = 0xFF;
                put_be32(ack + 4, (uint32_t)dqp_word | 0xFF000000u);
                put_be32(ack + 8, psn);
                put_be32(ack + 12, (0x1Fu << 24) | (uint32_t)msn);
                uint32_t crc = crc32_chain(
                    prefix_crc(local_ip.buf, a, local_port, 4791, 20, 0), ack, 16);
                ack[4] = 0;
                ack[16] = (unsigned char)crc;
                ack[17] = (unsigned char)(crc >> 8);
                ack[18] = (unsigned char)(crc >> 16);
                ack[19] = (unsigned char)(crc >> 24);
                struct sockaddr_in to = ipv4_to(&from.sin_addr, 4791);
                /* with an inline_reply hook, the ACK waits for the reply and leaves with it
                 * (one sendmmsg: the host wakes once for both), else it leaves now */
                PyObject *hook = reply_ok ? PyObject_GetAttr(qp, sinline_reply) : NULL;
                if (hook == NULL) PyErr_Clear();
                if (hook == Py_None) Py_CLEAR(hook);
                int aerr = 0;
                if (hook == NULL) {
                    struct iovec aiov = {ack, 20};
                    Py_BEGIN_ALLOW_THREADS
                    aerr = send_iov(fd, &to, &aiov, 1);
                    Py_END_ALLOW_THREADS
                }
                /* the ACK the host sends behind its request (for our previous reply): one
                 * 20-byte segment that Endpoint._on_datagram would pass to this QP */
                long ack_psn = -1;
                unsigned long ack_aeth = 0;
                const unsigned char *q = b + seglen;
                if (n - seglen == 20 && q[0] == 0x11 && (q[1] & 0x0F) == 0 &&
                    (q[2] & 0x7F) == 0x7F && q[3] == 0xFF && (get_be32(q + 4) & PSN_MASK) == qpn &&
                    icrc_ok(q, 20,
                            prefix_crc(a, local_ip.buf, ntohs(from.sin_port), local_port, 20, 1))) {
                    ack_psn = (long)(get_be32(q + 8) & PSN_MASK);
                    ack_aeth = get_be32(q + 12);
                }
                /* the reply of an inline kernel, straight behind the ACK */
                PyObject *reply = Py_None;
                if (hook != NULL) {
                    reply = inline_reply(qp, hook, fd, &to, local_ip.buf, local_port,
                                         get_be32(p + 28), ack, &aerr);
                    Py_DECREF(hook);
                    if (reply == NULL) {
                        Py_DECREF(qp);
                        goto done;
                    }
                } else {
                    Py_INCREF(reply);
                }
                req = Py_BuildValue("(NOIniIlkN)", qp, wr_id, (unsigned int)get_be32(p + 28),
                                    seglen - ICRC_LEN - ((p[1] >> 4) & 3) - REQ_HDR,
                                    (int)p[1], (unsigned int)aerr, ack_psn, ack_aeth, reply);
                qp = NULL; /* the tuple holds it */
                if (req == NULL) goto done;
                status = NR_REQUEST;
            } else {
                Py_DECREF(qp);
            }
        }
    }
    result = Py_BuildValue("(inny#iiN)", status, (Py_ssize_t)n, seglen,
                           (const char *)&from.sin_addr, (Py_ssize_t)4,
                           (int)ntohs(from.sin_port), wake, req == Py_None ? Py_NewRef(req) : req);
done:
    Py_XDECREF(wr_id);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&local_ip);
    return result;
}

/* --------------------------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"crc32", fp_crc32, METH_VARARGS, crc32_doc},
    {"icrc", fp_icrc, METH_VARARGS, icrc_doc},
    {"send_middle_run", fp_send_middle_run, METH_VARARGS, send_middle_run_doc},
    {"rx_middle_run", fp_rx_middle_run, METH_VARARGS, rx_middle_run_doc},
    {"rx_burst", fp_rx_burst, METH_VARARGS, rx_burst_doc},
    {"rpc_round_trip", fp_rpc_round_trip, METH_VARARGS, rpc_round_trip_doc},
    {"send_round_trip", fp_send_round_trip, METH_VARARGS, send_round_trip_doc},
    {"prefix_state", fp_prefix_state, METH_VARARGS, prefix_state_doc},
    {"send_small", fp_send_small, METH_VARARGS, send_small_doc},
    {"send_write_imm", fp_send_write_imm, METH_VARARGS, send_write_imm_doc},
    {"build_round_trip", fp_build_round_trip, METH_VARARGS, build_round_trip_doc},
    {"naa_receive", fp_naa_receive, METH_VARARGS, naa_receive_doc},
    {"ack_step", fp_ack_step, METH_VARARGS, ack_step_doc},
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
    if (init_names() < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "MAX_SEGS", MAX_SEGS) < 0 ||
        PyModule_AddIntConstant(m, "BURST_DRAINED", BURST_DRAINED) < 0 ||
        PyModule_AddIntConstant(m, "BURST_PENDING", BURST_PENDING) < 0 ||
        PyModule_AddIntConstant(m, "BURST_ERROR", BURST_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "BURST_ACK_OWED", BURST_ACK_OWED) < 0 ||
        PyModule_AddIntConstant(m, "RT_OK", RT_OK) < 0 ||
        PyModule_AddIntConstant(m, "RT_FALLBACK", RT_FALLBACK) < 0 ||
        PyModule_AddIntConstant(m, "RT_TIMEOUT", RT_TIMEOUT) < 0 ||
        PyModule_AddIntConstant(m, "RT_ERROR", RT_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "NR_NONE", NR_NONE) < 0 ||
        PyModule_AddIntConstant(m, "NR_DGRAM", NR_DGRAM) < 0 ||
        PyModule_AddIntConstant(m, "NR_REQUEST", NR_REQUEST) < 0 ||
        PyModule_AddIntConstant(m, "NR_ERROR", NR_ERROR) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
