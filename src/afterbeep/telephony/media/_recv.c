/*
 * afterbeep.telephony.media._recv: RTP receive for recordings on a native thread.
 *
 * One receive thread (epoll) per Receiver owns the RTP sockets given to it. For a session
 * that Python has *armed*, the thread takes the common case itself, without the GIL: a plain
 * 12-byte header from the latched source, the armed payload type and SSRC, exactly the next
 * sequence number and timestamp (what `Recorder.receive_next` takes in Python). The payload is
 * collected raw and decoded (G.711, tables given by Python) once `block` samples are collected,
 * or once the partial block is `flush_after` seconds old: the same blocks `Recorder` emits.
 * Anything else (telephone-event, another source or PT or SSRC, a gap, RTCP, a malformed
 * packet) disarms the session and is queued, as it came, for Python; so is every packet of a
 * session that is not armed. Python is woken through an eventfd (`fileno()`), takes the queue
 * and the finished blocks with `poll()` / `sync()`, runs its own receive path on the queued
 * packets and arms the session again with the state it arrived at.
 *
 * Our own extension because nothing maintained fits: aiortp (pure Python), pylibsrtp (SRTP
 * only), python-rtmidi / pjsua2 (a whole SIP stack whose media thread would replace ours) and
 * GStreamer's udpsrc (a pipeline per call) were looked at; none lets the event loop keep
 * DTMF, latching and the recording while a C thread does the per-packet work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RTP_HEADER 12
#define MAX_DATAGRAM 2048  /* larger ones are dropped and counted (`oversize`) */
#define READS_PER_WAKE 8    /* one recvmmsg per ready socket per round */
#define ROUND_GAP_NS 2000000 /* 2 ms between rounds: many sockets ready per epoll_wait */
#define SCAN_MS 20
#define QUEUE_LIMIT 65536

typedef struct Block {
    struct Block *next;
    int64_t offset;
    double since;  /* arrival of its first packet: where the block starts on the receive clock */
    Py_ssize_t samples;
    int16_t pcm[];
} Block;

typedef struct Item {
    struct Item *next;
    uint32_t sid;
    double arrival;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    Py_ssize_t size;
    unsigned char data[];
} Item;

typedef struct {
    int used;
    uint32_t generation;
    int fd;
    int armed;      /* the thread may take packets */
    int holding;    /* armed since Python last took the state back: the partial block is ours */
    int ready;      /* in the ready list */
    int queued;     /* items in the queue not yet polled */
    /* armed state */
    struct sockaddr_storage source;
    int alaw;
    int pt;
    uint32_t ssrc;
    uint16_t seq;   /* expected next */
    uint32_t ts;    /* expected next */
    int64_t position;  /* samples placed */
    int64_t max_ext;   /* reception statistics: extended highest sequence number */
    double jitter;
    uint32_t last_ts;
    int have_last_ts;
    double last_arrival;
    /* counters since the last sync */
    int64_t packets, octets, samples;
    /* the block being collected (raw G.711) */
    unsigned char *pending;
    Py_ssize_t pending_len, pending_cap;
    int64_t pending_offset;
    double pending_since;
    Block *blocks, *blocks_tail;
} Slot;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_t thread;
    int running;
    int inited;   /* the mutex exists */
    int stop;
    int epfd;
    int wakefd;   /* Python reads it */
    int stopfd;   /* the thread reads it */
    int signalled;
    int16_t ulaw[256], alaw[256];
    Py_ssize_t block;
    double flush_after;
    Slot *slots;
    uint32_t nslots;
    uint32_t *ready;
    uint32_t nready;
    Item *head, *tail;
    uint32_t nqueue;
    uint64_t overflow;
    uint64_t oversize;
    uint64_t wakeups;  /* epoll_wait returns (idle, the thread blocks until a packet or a kick) */
    uint64_t taken;    /* packets the thread took on the fast path (never handed to Python) */
    unsigned char *buf;
    struct mmsghdr msgs[READS_PER_WAKE];
    struct iovec iovs[READS_PER_WAKE];
    struct sockaddr_storage froms[READS_PER_WAKE];
} Receiver;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void signal_python(Receiver *self) {
    if (!self->signalled) {
        uint64_t one = 1;
        self->signalled = 1;
        if (write(self->wakefd, &one, sizeof one) < 0) { /* counter saturated: already readable */ }
    }
}

static void mark_ready(Receiver *self, uint32_t sid) {
    Slot *s = &self->slots[sid];
    if (!s->ready) {
        s->ready = 1;
        self->ready[self->nready++] = sid;
    }
    signal_python(self);
}

static int finish_block(Receiver *self, uint32_t sid) {
    Slot *s = &self->slots[sid];
    Block *b = malloc(sizeof(Block) + (size_t)s->pending_len * sizeof(int16_t));
    if (b == NULL)
        return -1;
    const int16_t *table = s->alaw ? self->alaw : self->ulaw;
    for (Py_ssize_t i = 0; i < s->pending_len; i++)
        b->pcm[i] = table[s->pending[i]];
    b->next = NULL;
    b->offset = s->pending_offset;
    b->since = s->pending_since;
    b->samples = s->pending_len;
    if (s->blocks_tail)
        s->blocks_tail->next = b;
    else
        s->blocks = b;
    s->blocks_tail = b;
    s->pending_len = 0;
    mark_ready(self, sid);
    return 0;
}

static int pending_reserve(Slot *s, Py_ssize_t need) {
    if (need <= s->pending_cap)
        return 0;
    Py_ssize_t cap = s->pending_cap ? s->pending_cap : 2048;
    while (cap < need)
        cap *= 2;
    unsigned char *p = realloc(s->pending, (size_t)cap);
    if (p == NULL)
        return -1;
    s->pending = p;
    s->pending_cap = cap;
    return 0;
}

static int same_source(const Slot *s, const struct sockaddr_storage *a) {
    if (a->ss_family != s->source.ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)&s->source;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)&s->source;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* The armed fast path; 1 when the packet was taken. Mirrors MediaSession._rtp_in's first
 * branch, Recorder.receive_next and ReceptionStats.packet. */
static int take(Receiver *self, uint32_t sid, const unsigned char *d, Py_ssize_t n,
                const struct sockaddr_storage *from, double arrival) {
    Slot *s = &self->slots[sid];
    if (!s->armed || n <= RTP_HEADER || d[0] != 0x80 || (d[1] & 0x7F) != s->pt ||
        (d[1] >= 192 && d[1] <= 223) /* RTCP on a muxed port (RFC 5761 4) */ ||
        !same_source(s, from))
        return 0;
    uint16_t seq = (uint16_t)((d[2] << 8) | d[3]);
    uint32_t ts = ((uint32_t)d[4] << 24) | ((uint32_t)d[5] << 16) | ((uint32_t)d[6] << 8) | d[7];
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    if (ssrc != s->ssrc || seq != s->seq || ts != s->ts)
        return 0;
    Py_ssize_t samples = n - RTP_HEADER;
    if (pending_reserve(s, s->pending_len + samples) < 0)
        return 0;
    /* reception statistics, as ReceptionStats.packet(audio=True) */
    int64_t delta = ((int64_t)seq - s->max_ext + 0x8000) % 65536;
    if (delta < 0)
        delta += 65536;
    delta -= 0x8000;
    if (delta > 0 && delta < 3000)
        s->max_ext += delta;
    if (s->have_last_ts) {
        int64_t dts = ((int64_t)ts - (int64_t)s->last_ts + 0x80000000LL) % 0x100000000LL;
        if (dts < 0)
            dts += 0x100000000LL;
        dts -= 0x80000000LL;
        double change = (arrival - s->last_arrival) * 8000 - (double)dts;
        s->jitter += (fabs(change) - s->jitter) / 16;
    }
    s->last_ts = ts;
    s->have_last_ts = 1;
    s->last_arrival = arrival;
    s->seq = (uint16_t)(seq + 1);
    s->ts = ts + (uint32_t)samples;
    if (s->pending_len == 0) {
        s->pending_offset = s->position;
        s->pending_since = arrival;
    }
    memcpy(s->pending + s->pending_len, d + RTP_HEADER, (size_t)samples);
    s->pending_len += samples;
    s->position += samples;
    s->packets++;
    self->taken++;
    s->octets += n;
    s->samples += samples;
    if (s->pending_len >= self->block && finish_block(self, sid) < 0)
        s->armed = 0; /* out of memory: the rest goes to Python */
    return 1;
}

static void hand_over(Receiver *self, uint32_t sid, const unsigned char *d, Py_ssize_t n,
                      const struct sockaddr_storage *from, socklen_t fromlen, double arrival) {
    Slot *s = &self->slots[sid];
    s->armed = 0;
    if (self->nqueue >= QUEUE_LIMIT) {
        self->overflow++;
        return;
    }
    Item *it = malloc(sizeof(Item) + (size_t)n);
    if (it == NULL) {
        self->overflow++;
        return;
    }
    it->next = NULL;
    it->sid = sid;
    it->arrival = arrival;
    memcpy(&it->addr, from, sizeof *from);
    it->addrlen = fromlen;
    it->size = n;
    memcpy(it->data, d, (size_t)n);
    if (self->tail)
        self->tail->next = it;
    else
        self->head = it;
    self->tail = it;
    self->nqueue++;
    s->queued++;
    signal_python(self);
}

static void read_socket(Receiver *self, uint32_t sid) {
    Slot *s = &self->slots[sid];
    for (int i = 0; i < READS_PER_WAKE; i++) {
        self->iovs[i].iov_base = self->buf + (size_t)i * MAX_DATAGRAM;
        self->iovs[i].iov_len = MAX_DATAGRAM;
        memset(&self->msgs[i].msg_hdr, 0, sizeof self->msgs[i].msg_hdr);
        self->msgs[i].msg_hdr.msg_iov = &self->iovs[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
        self->msgs[i].msg_hdr.msg_name = &self->froms[i];
        self->msgs[i].msg_hdr.msg_namelen = sizeof self->froms[i];
    }
    int n = recvmmsg(s->fd, self->msgs, READS_PER_WAKE, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return; /* EAGAIN, or an ICMP error for an earlier send: level-triggered, next round */
    double arrival = now_mono();
    for (int i = 0; i < n; i++) {
        const unsigned char *data = self->iovs[i].iov_base;
        Py_ssize_t size = self->msgs[i].msg_len;
        if (self->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            self->oversize++;
            continue;
        }
        const struct sockaddr_storage *from = &self->froms[i];
        if (!take(self, sid, data, size, from, arrival))
            hand_over(self, sid, data, size, from, self->msgs[i].msg_hdr.msg_namelen, arrival);
    }
}

/* Flushes the partial blocks that waited `flush_after`; 1 if some armed session still holds one. */
static int scan_partial(Receiver *self, double now) {
    int pending = 0;
    for (uint32_t sid = 0; sid < self->nslots; sid++) {
        Slot *s = &self->slots[sid];
        if (!s->used || !s->armed || s->pending_len == 0)
            continue;
        if (s->pending_since + self->flush_after <= now) {
            if (finish_block(self, sid) < 0)
                s->armed = 0;
        } else {
            pending = 1;
        }
    }
    return pending;
}

static void *run(void *arg) {
    Receiver *self = arg;
    struct epoll_event events[256];
    double next_scan = now_mono() + SCAN_MS / 1000.0;
    int idle = 0; /* no partial block to flush: wait for a packet (or a kick), not the clock */
    for (;;) {
        int timeout = -1;
        if (!idle) {
            timeout = (int)((next_scan - now_mono()) * 1000) + 1;
            if (timeout < 0)
                timeout = 0;
        }
        int n = epoll_wait(self->epfd, events, 256, timeout);
        if (n > 0 && n < 256) {
            /* let more sockets get ready: one wake-up for many packets, not one each */
            struct timespec gap = {0, ROUND_GAP_NS};
            nanosleep(&gap, NULL);
            n = epoll_wait(self->epfd, events, 256, 0);
        }
        pthread_mutex_lock(&self->lock);
        self->wakeups++;
        if (self->stop) {
            pthread_mutex_unlock(&self->lock);
            return NULL;
        }
        if (idle && n > 0)
            next_scan = now_mono() + SCAN_MS / 1000.0; /* the first packet after a pause */
        for (int i = 0; i < n; i++) {
            uint64_t key = events[i].data.u64;
            if (key == UINT64_MAX) { /* a kick (arm with a partial block): drain it */
                uint64_t count;
                if (read(self->stopfd, &count, sizeof count) < 0) { /* already drained */ }
                idle = 0;
                continue;
            }
            idle = 0;
            uint32_t sid = (uint32_t)key, generation = (uint32_t)(key >> 32);
            if (sid < self->nslots && self->slots[sid].used &&
                self->slots[sid].generation == generation)
                read_socket(self, sid);
        }
        double now = now_mono();
        if (now >= next_scan) {
            idle = !scan_partial(self, now);
            next_scan = now + SCAN_MS / 1000.0;
        }
        pthread_mutex_unlock(&self->lock);
    }
}

static PyObject *make_addr(const struct sockaddr_storage *a) {
    char host[INET6_ADDRSTRLEN];
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a;
        inet_ntop(AF_INET, &x->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(x->sin_port));
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a;
        inet_ntop(AF_INET6, &x->sin6_addr, host, sizeof host);
        return Py_BuildValue("(siII)", host, ntohs(x->sin6_port), ntohl(x->sin6_flowinfo),
                             x->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static void free_blocks(Slot *s) {
    Block *b = s->blocks;
    while (b) {
        Block *next = b->next;
        free(b);
        b = next;
    }
    s->blocks = s->blocks_tail = NULL;
}

static Slot *slot_of(Receiver *self, unsigned long sid) {
    if (sid >= self->nslots || !self->slots[sid].used) {
        PyErr_SetString(PyExc_KeyError, "no such receive session");
        return NULL;
    }
    return &self->slots[sid];
}

/* ---- the Python type ------------------------------------------------------------------- */

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ulaw", "alaw", "block", "flush_after", NULL};
    Py_buffer ulaw, alaw;
    Py_ssize_t block;
    double flush_after;
    if (self->epfd != 0) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*nd", kwlist, &ulaw, &alaw, &block,
                                     &flush_after))
        return -1;
    int ok = ulaw.len == 512 && alaw.len == 512 && block > 0;
    if (ok) {
        memcpy(self->ulaw, ulaw.buf, 512);
        memcpy(self->alaw, alaw.buf, 512);
    }
    PyBuffer_Release(&ulaw);
    PyBuffer_Release(&alaw);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "two 256-entry int16 tables and a positive block");
        return -1;
    }
    self->block = block;
    self->flush_after = flush_after;
    self->buf = malloc((size_t)MAX_DATAGRAM * READS_PER_WAKE);
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->buf == NULL || self->epfd < 0 || self->wakefd < 0 || self->stopfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->stopfd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->inited = 1;
    if (pthread_create(&self->thread, NULL, run, self) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot start the RTP receive thread");
        return -1;
    }
    self->running = 1;
    return 0;
}

static void stop_thread(Receiver *self) {
    if (!self->running)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = 1;
    pthread_mutex_unlock(&self->lock);
    uint64_t one = 1;
    if (write(self->stopfd, &one, sizeof one) < 0) { /* the thread sees `stop` at its next wake */ }
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
    self->running = 0;
}

static void release_all(Receiver *self) {
    for (uint32_t i = 0; i < self->nslots; i++) {
        free_blocks(&self->slots[i]);
        free(self->slots[i].pending);
    }
    free(self->slots);
    free(self->ready);
    self->slots = NULL;
    self->ready = NULL;
    self->nslots = self->nready = 0;
    Item *it = self->head;
    while (it) {
        Item *next = it->next;
        free(it);
        it = next;
    }
    self->head = self->tail = NULL;
    self->nqueue = 0;
    int *fds[] = {&self->epfd, &self->wakefd, &self->stopfd};
    for (int i = 0; i < 3; i++)
        if (*fds[i] > 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    free(self->buf);
    self->buf = NULL;
}

static void Receiver_dealloc(Receiver *self) {
    stop_thread(self);
    if (self->inited)
        pthread_mutex_destroy(&self->lock);
    release_all(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_open(Receiver *self) {
    if (!self->running) {
        PyErr_SetString(PyExc_RuntimeError, "the receiver is closed");
        return -1;
    }
    return 0;
}

static PyObject *Receiver_close(Receiver *self, PyObject *unused) {
    if (self->running) {
        stop_thread(self);
        release_all(self);
    }
    Py_RETURN_NONE;
}

static PyObject *Receiver_fileno(Receiver *self, PyObject *unused) {
    if (check_open(self) < 0)
        return NULL;
    return PyLong_FromLong(self->wakefd);
}

static PyObject *Receiver_add(Receiver *self, PyObject *args) {
    int fd;
    if (!PyArg_ParseTuple(args, "i", &fd) || check_open(self) < 0)
        return NULL;
    pthread_mutex_lock(&self->lock);
    uint32_t sid = 0;
    while (sid < self->nslots && self->slots[sid].used)
        sid++;
    if (sid == self->nslots) {
        uint32_t n = self->nslots ? self->nslots * 2 : 64;
        Slot *slots = realloc(self->slots, n * sizeof(Slot));
        uint32_t *ready = slots ? realloc(self->ready, n * sizeof(uint32_t)) : NULL;
        if (slots)
            self->slots = slots;
        if (ready == NULL) {
            pthread_mutex_unlock(&self->lock);
            return PyErr_NoMemory();
        }
        self->ready = ready;
        memset(slots + self->nslots, 0, (n - self->nslots) * sizeof(Slot));
        self->nslots = n;
    }
    Slot *s = &self->slots[sid];
    uint32_t generation = s->generation + 1;
    unsigned char *pending = s->pending;
    Py_ssize_t cap = s->pending_cap;
    memset(s, 0, sizeof *s);
    s->pending = pending;
    s->pending_cap = cap;
    s->generation = generation;
    s->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)generation << 32) | sid};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        pthread_mutex_unlock(&self->lock);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->used = 1;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromUnsignedLong(sid);
}

/* The state Python continues from: (blocks, packets, octets, samples, seq, ts, last_arrival,
 * max_ext, jitter, last_ts, partial). `blocks` is a list of (offset, bytearray of int16,
 * arrival of the block's first packet);
 * `partial` (raw G.711, its offset, its start) only when the session is disarmed. */
static PyObject *take_state(Receiver *self, Slot *s, int disarm) {
    PyObject *blocks = PyList_New(0);
    if (blocks == NULL)
        return NULL;
    for (Block *b = s->blocks; b; b = b->next) {
        PyObject *pcm = PyByteArray_FromStringAndSize((const char *)b->pcm,
                                                      b->samples * (Py_ssize_t)sizeof(int16_t));
        PyObject *item = pcm ? Py_BuildValue("(LNd)", (long long)b->offset, pcm, b->since) : NULL;
        if (item == NULL || PyList_Append(blocks, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(blocks);
            return NULL;
        }
        Py_DECREF(item);
    }
    PyObject *partial;
    if (disarm && s->holding) {
        partial = Py_BuildValue("(y#Ld)", (const char *)s->pending, s->pending_len,
                                (long long)s->pending_offset, s->pending_since);
    } else {
        partial = Py_NewRef(Py_None);
    }
    PyObject *last_ts = s->have_last_ts ? PyLong_FromUnsignedLong(s->last_ts) : Py_NewRef(Py_None);
    PyObject *out = partial == NULL || last_ts == NULL ? NULL
                  : Py_BuildValue("(NLLLIIdLdNN)", blocks, (long long)s->packets,
                                  (long long)s->octets, (long long)s->samples, (unsigned)s->seq,
                                  (unsigned)s->ts, s->last_arrival, (long long)s->max_ext,
                                  s->jitter, last_ts, partial);
    if (out == NULL) {
        if (partial == NULL || last_ts == NULL) {
            Py_XDECREF(partial);
            Py_XDECREF(last_ts);
            Py_DECREF(blocks);
        }
        return NULL;
    }
    free_blocks(s);
    s->packets = s->octets = s->samples = 0;
    if (disarm) {
        s->armed = s->holding = 0;
        s->pending_len = 0;
    }
    return out;
}

static PyObject *Receiver_sync(Receiver *self, PyObject *args) {
    unsigned long sid;
    int disarm;
    if (!PyArg_ParseTuple(args, "kp", &sid, &disarm) || check_open(self) < 0)
        return NULL;
    pthread_mutex_lock(&self->lock);
    Slot *s = slot_of(self, sid);
    PyObject *out = s ? take_state(self, s, disarm) : NULL;
    pthread_mutex_unlock(&self->lock);
    return out;
}

static PyObject *Receiver_remove(Receiver *self, PyObject *args) {
    unsigned long sid;
    if (!PyArg_ParseTuple(args, "k", &sid) || check_open(self) < 0)
        return NULL;
    pthread_mutex_lock(&self->lock);
    Slot *s = slot_of(self, sid);
    PyObject *out = s ? take_state(self, s, 1) : NULL;
    if (s) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, s->fd, NULL);
        s->used = 0;
        s->fd = -1;
        /* its queued datagrams go too: the slot may serve another session before poll() */
        Item **link = &self->head;
        self->tail = NULL;
        while (*link) {
            Item *x = *link;
            if (x->sid == sid) {
                *link = x->next;
                free(x);
                self->nqueue--;
            } else {
                self->tail = x;
                link = &x->next;
            }
        }
        s->queued = 0;
    }
    pthread_mutex_unlock(&self->lock);
    return out;
}

static PyObject *Receiver_arm(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"sid", "host", "port", "pt", "alaw", "ssrc", "seq", "ts",
                             "position", "max_ext", "jitter", "last_ts", "last_arrival",
                             "pending", "pending_offset", "pending_since", NULL};
    unsigned long sid, ssrc, ts, last_ts;
    const char *host;
    int port, pt, alaw;
    unsigned int seq;
    long long position, max_ext, pending_offset;
    double jitter, last_arrival, pending_since;
    PyObject *last_ts_obj;
    Py_buffer pending;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ksiipkIkLLdOdy*Ld", kwlist, &sid, &host, &port,
                                     &pt, &alaw, &ssrc, &seq, &ts, &position, &max_ext, &jitter,
                                     &last_ts_obj, &last_arrival, &pending, &pending_offset,
                                     &pending_since))
        return NULL;
    int have_last_ts = last_ts_obj != Py_None;
    last_ts = have_last_ts ? PyLong_AsUnsignedLongMask(last_ts_obj) : 0;
    struct sockaddr_storage source;
    memset(&source, 0, sizeof source);
    struct sockaddr_in *v4 = (void *)&source;
    struct sockaddr_in6 *v6 = (void *)&source;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
    } else {
        PyBuffer_Release(&pending);
        return PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
    }
    if (check_open(self) < 0) {
        PyBuffer_Release(&pending);
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    Slot *s = slot_of(self, sid);
    int armed = 0;
    if (s && s->queued == 0 && !s->holding && s->blocks == NULL &&
        pending_reserve(s, pending.len + self->block + 2048) == 0) {
        s->source = source;
        s->pt = pt;
        s->alaw = alaw;
        s->ssrc = (uint32_t)ssrc;
        s->seq = (uint16_t)seq;
        s->ts = (uint32_t)ts;
        s->position = position;
        s->max_ext = max_ext;
        s->jitter = jitter;
        s->last_ts = (uint32_t)last_ts;
        s->have_last_ts = have_last_ts;
        s->last_arrival = last_arrival;
        s->packets = s->octets = s->samples = 0;
        memcpy(s->pending, pending.buf, (size_t)pending.len);
        s->pending_len = pending.len;
        s->pending_offset = pending_offset;
        s->pending_since = pending_since;
        s->armed = s->holding = armed = 1;
    }
    pthread_mutex_unlock(&self->lock);
    if (armed && pending.len > 0) { /* the thread may be blocked with no flush scheduled */
        uint64_t one = 1;
        if (write(self->stopfd, &one, sizeof one) < 0) { /* counter saturated: already readable */ }
    }
    PyBuffer_Release(&pending);
    if (s == NULL)
        return NULL;
    return PyBool_FromLong(armed);
}

/* (packets, ready): the queued datagrams as (sid, data, addr, arrival), oldest first, and the
 * sessions with finished blocks. Resets the eventfd. */
static PyObject *Receiver_poll(Receiver *self, PyObject *unused) {
    if (check_open(self) < 0)
        return NULL;
    uint64_t count;
    if (read(self->wakefd, &count, sizeof count) < 0) { /* not signalled: nothing to reset */ }
    pthread_mutex_lock(&self->lock);
    Item *it = self->head;
    self->head = self->tail = NULL;
    self->nqueue = 0;
    self->signalled = 0;
    PyObject *ready = PyList_New(self->nready);
    for (uint32_t i = 0; i < self->nready; i++) {
        uint32_t sid = self->ready[i];
        self->slots[sid].ready = 0;
        if (ready)
            PyList_SET_ITEM(ready, i, PyLong_FromUnsignedLong(sid));
    }
    self->nready = 0;
    for (Item *x = it; x; x = x->next)
        if (x->sid < self->nslots)
            self->slots[x->sid].queued = 0;
    pthread_mutex_unlock(&self->lock);
    PyObject *packets = PyList_New(0);
    while (it) {
        Item *next = it->next;
        if (packets && ready) {
            PyObject *addr = make_addr(&it->addr);
            PyObject *t = addr ? Py_BuildValue("(ky#Nd)", (unsigned long)it->sid,
                                               (const char *)it->data, it->size, addr, it->arrival)
                               : NULL;
            if (t == NULL || PyList_Append(packets, t) < 0)
                Py_CLEAR(packets);
            Py_XDECREF(t);
        }
        free(it);
        it = next;
    }
    if (packets == NULL || ready == NULL) {
        Py_XDECREF(packets);
        Py_XDECREF(ready);
        return NULL;
    }
    return Py_BuildValue("(NN)", packets, ready);
}

static PyObject *Receiver_wakeups(Receiver *self, void *closure) {
    (void)closure;
    pthread_mutex_lock(&self->lock);
    uint64_t wakeups = self->wakeups;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromUnsignedLongLong(wakeups);
}

static PyObject *Receiver_overflow(Receiver *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->overflow);
}

static PyObject *Receiver_taken(Receiver *self, void *closure) {
    (void)closure;
    pthread_mutex_lock(&self->lock);
    uint64_t taken = self->taken;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromUnsignedLongLong(taken);
}

static PyObject *now_py(PyObject *module, PyObject *unused) {
    return PyFloat_FromDouble(now_mono());
}

static PyMethodDef Receiver_methods[] = {
    {"fileno", (PyCFunction)Receiver_fileno, METH_NOARGS, "The eventfd that wakes Python."},
    {"add", (PyCFunction)Receiver_add, METH_VARARGS, "Own an RTP socket's fd; its session id."},
    {"remove", (PyCFunction)Receiver_remove, METH_VARARGS,
     "Stop reading a session's fd (synchronously) and return its last state."},
    {"arm", (PyCFunction)(void (*)(void))Receiver_arm, METH_VARARGS | METH_KEYWORDS,
     "Take the fast path for a session from this state; False if packets wait for Python."},
    {"sync", (PyCFunction)Receiver_sync, METH_VARARGS,
     "Finished blocks and counters since the last sync; disarm to take the partial block too."},
    {"poll", (PyCFunction)Receiver_poll, METH_NOARGS, "Queued datagrams and ready sessions."},
    {"close", (PyCFunction)Receiver_close, METH_NOARGS, "Stop the thread, free everything."},
    {NULL}};

static PyObject *Receiver_oversize(Receiver *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->oversize);
}

static PyGetSetDef Receiver_getset[] = {
    {"overflow", (getter)Receiver_overflow, NULL, "datagrams dropped: queue full", NULL},
    {"wakeups", (getter)Receiver_wakeups, NULL, "times the thread woke (none while idle)", NULL},
    {"oversize", (getter)Receiver_oversize, NULL, "datagrams dropped: over 2048 bytes", NULL},
    {"taken", (getter)Receiver_taken, NULL, "packets taken by the thread (not handed over)", NULL},
    {NULL}};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "afterbeep.telephony.media._recv.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
};

static PyMethodDef module_methods[] = {
    {"now", now_py, METH_NOARGS, "CLOCK_MONOTONIC, the arrival clock (= time.monotonic())."},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_recv", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__recv(void) {
    if (PyType_Ready(&ReceiverType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReceiverType);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0) {
        Py_DECREF(&ReceiverType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
