/* afterbeep.telephony.media._pace: prompts sent as RTP by one native thread, off the GIL.
 *
 * Why our own extension: at 400 calls the event loop spent a quarter of its time pacing
 * prompts (Pacer._run, _Job.tick, AudioJob._frame, the sendto via uvloop), and a loop that
 * wakes late sent the beep late. Nothing on PyPI paces RTP from a thread of its own without
 * the GIL: aiortp (0.8.0, used here for packet classes) runs a sender task per call on the
 * event loop; pysockmmsg / sendmmsg wrappers batch datagrams of ONE socket (each call has its
 * own socket here); aiortc and pylibsrtp are asyncio/crypto. So: one pthread per process with
 * its own CLOCK_MONOTONIC schedule (pthread_cond_timedwait on a monotonic condattr: an
 * absolute-time sleep that start() can cut short), a table of send jobs, and per frame a
 * 12-byte header built on the stack and sendmsg(header, payload) with an iovec: the payload
 * is a slice of the prompt's shared, immutable G.711 bytes (Prompt.encoded), never copied.
 *
 * The thread never takes the GIL. Python learns what happened from an eventfd it watches
 * with loop.add_reader and drain(), which returns the events (first frame sent, job done with
 * its final RTP state) and drops the references to the payloads. cancel() takes the job out
 * under the table's mutex: once it returns no frame of that job is ever sent again, so the
 * caller may close the socket. A job may be started "after" another one: it begins exactly
 * where its predecessor ends (same schedule, contiguous sequence numbers and timestamps), or,
 * if the predecessor is cancelled, at the predecessor's next frame slot; a chain of prompts
 * therefore never waits for the event loop.
 *
 * The RTP rules are those of sender.py (RtpSendStream/AudioJob), so both pacers send the same
 * packets: marker on the first packet of a talkspurt, on hold frames pass unsent and the next is
 * marked; but after a stall of the thread, MAX_BURST frames go at once and the rest of those due
 * are dropped (the Python pacer slips its schedule to "now" instead): a beep keeps its time.
 *
 * A job started with `every` > 1 sends one frame in `every` (a keep-alive of silence while
 * recording, as AudioJob does): the frames between pass unsent, the next sent one is marked, and
 * the thread wakes for the frames it sends only. On the event loop it cost a timer, a task step
 * and a `sendto` per keep-alive frame, 5 a second per recording call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_BURST 5
#define MAX_FRAME 1024

enum { EV_FIRST = 0, EV_DONE = 1 };

typedef struct Job {
    uint64_t id;
    uint64_t after; /* predecessor's id while waiting, 0 once active */
    int fd;
    struct sockaddr_storage dest;
    socklen_t dest_len;
    PyObject *payload; /* a bytes object; reference released by drain() */
    const unsigned char *data;
    Py_ssize_t length;
    Py_ssize_t position; /* samples (= octets for G.711) played so far */
    int frame_bytes;
    int every; /* 1: every frame; n > 1: one frame in n is sent (a keep-alive) */
    int64_t ptime_ns;
    unsigned char silence;
    unsigned char pt;
    int sending;
    int marker;
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
    int64_t due; /* ns, CLOCK_MONOTONIC, of the next frame */
    int64_t frames;
    int64_t packets;
    int64_t octets;
    int64_t withheld;
    int64_t slips;
    int64_t errors;
    int first_reported;
} Job;

typedef struct Event {
    int kind;
    uint64_t id;
    int64_t when; /* EV_FIRST: the first frame's send time; EV_DONE: the end */
    int interrupted;
    int64_t frames, samples, packets, octets, withheld, slips, errors;
    uint16_t seq;
    uint32_t ts;
    int64_t due;
    int marker;
    int state_valid; /* a job cancelled while waiting never had a stream state */
    PyObject *payload;
} Event;

typedef struct {
    void **items;
    size_t len, cap;
} Vec;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;
static pthread_t thread;
static int running = 0;
static int stopping = 0;
static int event_fd = -1;
static uint64_t next_id = 1;
static int64_t granularity_ns = 2000000;
static Vec active, waiting;
static Event *events = NULL;
static size_t n_events = 0, cap_events = 0;
static uint64_t wakeups = 0;
static int64_t max_late_ns = 0;
static int realtime = 0; /* the thread runs SCHED_FIFO (allowed: CAP_SYS_NICE or RLIMIT_RTPRIO) */

static int64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int vec_push(Vec *v, void *item) {
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        void **items = realloc(v->items, cap * sizeof(void *));
        if (items == NULL) return -1;
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = item;
    return 0;
}

static void vec_remove_at(Vec *v, size_t i) {
    v->items[i] = v->items[--v->len];
}

static Job *vec_find(Vec *v, uint64_t id, size_t *where) {
    for (size_t i = 0; i < v->len; i++) {
        Job *job = v->items[i];
        if (job->id == id) {
            if (where) *where = i;
            return job;
        }
    }
    return NULL;
}

static Event *event_slot(void) {
    if (n_events == cap_events) {
        size_t cap = cap_events ? cap_events * 2 : 256;
        Event *grown = realloc(events, cap * sizeof(Event));
        if (grown == NULL) return NULL; /* out of memory: the event is lost */
        events = grown;
        cap_events = cap;
    }
    Event *ev = &events[n_events++];
    memset(ev, 0, sizeof(*ev));
    return ev;
}

static void notify(void) {
    uint64_t one = 1;
    ssize_t r = write(event_fd, &one, sizeof one);
    (void)r; /* the counter cannot overflow in practice; a failed write only delays drain */
}

static void emit_first(Job *job, int64_t now) {
    Event *ev = event_slot();
    if (ev == NULL) return;
    ev->kind = EV_FIRST;
    ev->id = job->id;
    ev->when = now;
    ev->due = job->due;
    if (n_events == 1) notify();
}

/* Take `job` out of the tables first; its payload reference goes with the event. */
static void emit_done(Job *job, int interrupted, int state_valid) {
    Event *ev = event_slot();
    if (ev == NULL) {
        /* cannot report it: leak the reference rather than touch it without the GIL */
        free(job);
        return;
    }
    ev->kind = EV_DONE;
    ev->id = job->id;
    ev->when = clock_ns();
    ev->interrupted = interrupted;
    ev->frames = job->frames;
    ev->samples = job->position < job->length ? job->position : job->length;
    ev->packets = job->packets;
    ev->octets = job->octets;
    ev->withheld = job->withheld;
    ev->slips = job->slips;
    ev->errors = job->errors;
    ev->seq = job->seq;
    ev->ts = job->ts;
    ev->due = job->due;
    ev->marker = job->marker;
    ev->state_valid = state_valid;
    ev->payload = job->payload;
    if (n_events == 1) notify();
    free(job);
}

/* The successor of `done` (if one waits) starts where `done` stopped. */
static void hand_over(Job *done) {
    size_t i;
    for (i = 0; i < waiting.len; i++) {
        Job *next = waiting.items[i];
        if (next->after != done->id) continue;
        vec_remove_at(&waiting, i);
        next->after = 0;
        next->seq = done->seq;
        next->ts = done->ts;
        next->due = done->due;
        next->marker = done->marker;
        if (vec_push(&active, next) != 0) emit_done(next, 1, 0);
        return;
    }
}

static void send_frame(Job *job) {
    int count = job->frame_bytes;
    if (job->sending) {
        unsigned char header[12];
        unsigned char padded[MAX_FRAME];
        Py_ssize_t left = job->length - job->position;
        struct iovec iov[2];
        header[0] = 0x80;
        header[1] = job->pt | (job->marker ? 0x80 : 0);
        header[2] = job->seq >> 8;
        header[3] = job->seq & 0xFF;
        header[4] = job->ts >> 24;
        header[5] = (job->ts >> 16) & 0xFF;
        header[6] = (job->ts >> 8) & 0xFF;
        header[7] = job->ts & 0xFF;
        header[8] = job->ssrc >> 24;
        header[9] = (job->ssrc >> 16) & 0xFF;
        header[10] = (job->ssrc >> 8) & 0xFF;
        header[11] = job->ssrc & 0xFF;
        iov[0].iov_base = header;
        iov[0].iov_len = sizeof header;
        if (left >= count) {
            iov[1].iov_base = (void *)(job->data + job->position);
        } else { /* the last frame, padded with silence as Prompt.frames() does */
            memcpy(padded, job->data + job->position, (size_t)left);
            memset(padded + left, job->silence, (size_t)(count - left));
            iov[1].iov_base = padded;
        }
        iov[1].iov_len = (size_t)count;
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_name = &job->dest;
        msg.msg_namelen = job->dest_len;
        msg.msg_iov = iov;
        msg.msg_iovlen = 2;
        if (sendmsg(job->fd, &msg, MSG_DONTWAIT) < 0) job->errors++;
        job->marker = 0;
        job->seq = (uint16_t)(job->seq + 1);
        job->packets++;
        job->octets += count;
    } else { /* on hold: the frame's time passes, nothing is numbered */
        job->marker = 1;
        job->withheld++;
    }
    job->ts += (uint32_t)count;
    job->due += job->ptime_ns;
    job->frames++;
    job->position += count;
}

/* A frame's time passes unsent, after a stall: the next packet opens a talkspurt. */
static void drop_frame(Job *job) {
    job->marker = 1;
    job->ts += (uint32_t)job->frame_bytes;
    job->due += job->ptime_ns;
    job->frames++;
    job->position += job->frame_bytes;
}

/* When the next frame `job` sends is due (a keep-alive's unsent frames are not waited for). */
static int64_t next_sent(const Job *job) {
    if (job->every <= 1) return job->due;
    int64_t wait = (job->every - job->frames % job->every) % job->every;
    int64_t left = (job->length - job->position + job->frame_bytes - 1) / job->frame_bytes;
    if (wait > left) wait = left;
    return job->due + wait * job->ptime_ns;
}

/* Sends the frames of `job` due by `now`; 1 once it has sent (or dropped) its last one.
 * After a stall (this thread starved of a CPU) MAX_BURST frames go at once and the rest of
 * those due are dropped, not sent late: the schedule, and with it a chain's beep, keeps its
 * time (the Python pacer slips instead). `slips` counts the stalls. */
static int serve_job(Job *job, int64_t now) {
    int burst = 0;
    int64_t sent_due = next_sent(job);
    if (sent_due <= now && now - sent_due > max_late_ns) max_late_ns = now - sent_due;
    while (job->due <= now) {
        if (job->every > 1 && job->frames % job->every) { /* a keep-alive's unsent frame */
            drop_frame(job);
            if (job->position >= job->length) return 1;
            continue;
        }
        if (burst == MAX_BURST) {
            job->slips++;
            while (job->due <= now) {
                drop_frame(job);
                if (job->position >= job->length) return 1;
            }
            return 0;
        }
        if (!job->first_reported) {
            job->first_reported = 1;
            emit_first(job, now);
        }
        send_frame(job);
        burst++;
        if (job->position >= job->length) return 1;
    }
    return 0;
}

/* Sends what is due; the next due time of the remaining jobs (INT64_MAX: none). */
static int64_t serve(int64_t now) {
    int64_t next = INT64_MAX;
    size_t i = 0;
    while (i < active.len) {
        Job *job = active.items[i];
        if (serve_job(job, now)) {
            vec_remove_at(&active, i);
            hand_over(job);
            emit_done(job, 0, 1);
            continue; /* the item at i is another job now (or a successor appended) */
        }
        int64_t due = next_sent(job);
        if (due < next) next = due;
        i++;
    }
    return next;
}

static void *run(void *unused) {
    (void)unused;
    int64_t last = 0;
    /* Where allowed, the lowest real-time priority, as audio servers take (rtkit): a loaded
     * machine then delays this thread's few microseconds per frame by less than a frame, where
     * under the normal scheduler it can wait 100 ms and more. Its work per wake-up is bounded
     * (one sendmsg per frame due), so it cannot hold a CPU; refused, it runs as before. */
    struct sched_param param = {.sched_priority = 1};
    int rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0;
    pthread_mutex_lock(&lock);
    realtime = rt;
    while (!stopping) {
        int64_t now = clock_ns();
        wakeups++;
        int64_t next = serve(now);
        last = now;
        if (next == INT64_MAX) {
            pthread_cond_wait(&wake, &lock);
            continue;
        }
        if (next < last + granularity_ns) next = last + granularity_ns;
        struct timespec at = {(time_t)(next / 1000000000), (long)(next % 1000000000)};
        pthread_cond_timedwait(&wake, &lock, &at);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static int ensure_running(void) {
    if (running) return 0;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attr);
    pthread_condattr_destroy(&attr);
    stopping = 0;
    int rc = pthread_create(&thread, NULL, run, NULL);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    running = 1;
    return 0;
}

static int parse_dest(const char *host, int port, struct sockaddr_storage *out, socklen_t *len) {
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not a literal IP address: %s", host);
    return -1;
}

static int64_t seconds_to_ns(double seconds) { return (int64_t)(seconds * 1e9 + (seconds >= 0 ? 0.5 : -0.5)); }

PyDoc_STRVAR(start_doc,
"start(fd, host, port, payload, frame_bytes, ptime, pt, silence, ssrc, seq, ts, marker, due,\n"
"      sending, after=0, every=1) -> job id, or 0 when `after` is no longer waiting or playing\n\n"
"Send `payload` (bytes, one octet per sample) in frames of `frame_bytes` every `ptime`\n"
"seconds, the first at `due` (time.monotonic() seconds) with sequence `seq`, timestamp `ts`.\n"
"With `after`, the job begins where that job ends (its stream state wins over the given one).\n"
"With `every` > 1 only one frame in `every` is sent (a keep-alive; the others' time passes).");

static PyObject *pace_start(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"fd", "host", "port", "payload", "frame_bytes", "ptime", "pt",
                             "silence", "ssrc", "seq", "ts", "marker", "due", "sending",
                             "after", "every", NULL};
    int fd, port, frame_bytes, pt, silence, marker, sending;
    const char *host;
    PyObject *payload;
    double ptime, due;
    unsigned long ssrc, ts, seq;
    unsigned long long after = 0;
    int every = 1;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "isiSidiikkkpdp|Ki", kwlist, &fd, &host, &port,
                                     &payload, &frame_bytes, &ptime, &pt, &silence, &ssrc, &seq,
                                     &ts, &marker, &due, &sending, &after, &every))
        return NULL;
    if (every < 1) {
        PyErr_SetString(PyExc_ValueError, "every must be at least 1");
        return NULL;
    }
    if (frame_bytes <= 0 || frame_bytes > MAX_FRAME || ptime <= 0) {
        PyErr_SetString(PyExc_ValueError, "bad frame size or packet time");
        return NULL;
    }
    if (PyBytes_GET_SIZE(payload) == 0) {
        PyErr_SetString(PyExc_ValueError, "empty payload");
        return NULL;
    }
    Job *job = calloc(1, sizeof(Job));
    if (job == NULL) return PyErr_NoMemory();
    if (parse_dest(host, port, &job->dest, &job->dest_len) != 0) {
        free(job);
        return NULL;
    }
    job->fd = fd;
    job->payload = payload;
    job->data = (const unsigned char *)PyBytes_AS_STRING(payload);
    job->length = PyBytes_GET_SIZE(payload);
    job->frame_bytes = frame_bytes;
    job->every = every;
    job->ptime_ns = seconds_to_ns(ptime);
    job->silence = (unsigned char)silence;
    job->pt = (unsigned char)(pt & 0x7F);
    job->sending = sending;
    job->marker = marker;
    job->ssrc = (uint32_t)ssrc;
    job->seq = (uint16_t)seq;
    job->ts = (uint32_t)ts;
    job->due = seconds_to_ns(due);
    pthread_mutex_lock(&lock);
    if (ensure_running() != 0) {
        pthread_mutex_unlock(&lock);
        free(job);
        return NULL;
    }
    if (after != 0) {
        if (vec_find(&active, after, NULL) == NULL && vec_find(&waiting, after, NULL) == NULL) {
            pthread_mutex_unlock(&lock);
            free(job);
            return PyLong_FromLong(0);
        }
        job->after = after;
    }
    job->id = next_id++;
    Vec *table = after != 0 ? &waiting : &active;
    if (vec_push(table, job) != 0) {
        pthread_mutex_unlock(&lock);
        free(job);
        return PyErr_NoMemory();
    }
    Py_INCREF(payload);
    uint64_t id = job->id;
    if (after == 0) {
        /* A frame already due leaves now, from this thread, rather than at the pacing
         * thread's next wake-up (as Pacer.add does). */
        if (job->due <= clock_ns() && serve_job(job, clock_ns())) {
            active.len--; /* it is the last one pushed */
            emit_done(job, 0, 1);
        }
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&lock);
    return PyLong_FromUnsignedLongLong(id);
}

/* Under the lock: end `id` (playing or waiting) as interrupted; 1 if it was there. */
static int cancel_locked(uint64_t id) {
    size_t i;
    Job *job = vec_find(&active, id, &i);
    if (job != NULL) {
        vec_remove_at(&active, i);
        hand_over(job);
        emit_done(job, 1, 1);
        return 1;
    }
    job = vec_find(&waiting, id, &i);
    if (job != NULL) {
        vec_remove_at(&waiting, i);
        for (size_t k = 0; k < waiting.len; k++) { /* its successor waits for its predecessor */
            Job *next = waiting.items[k];
            if (next->after == id) next->after = job->after;
        }
        emit_done(job, 1, 0);
        return 1;
    }
    return 0;
}

PyDoc_STRVAR(cancel_doc,
"cancel(*ids) -> how many were still playing or waiting\n\n"
"Ends them now, as interrupted; once this returns none of their frames is sent again.");

static PyObject *pace_cancel(PyObject *self, PyObject *args) {
    (void)self;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    uint64_t ids[64];
    uint64_t *list = n <= 64 ? ids : PyMem_Malloc((size_t)n * sizeof(uint64_t));
    if (list == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        list[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args, i));
        if (list[i] == (uint64_t)-1 && PyErr_Occurred()) {
            if (list != ids) PyMem_Free(list);
            return NULL;
        }
    }
    int found = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&lock);
    for (Py_ssize_t i = 0; i < n; i++) found += cancel_locked(list[i]);
    pthread_mutex_unlock(&lock);
    Py_END_ALLOW_THREADS
    if (list != ids) PyMem_Free(list);
    return PyLong_FromLong(found);
}

PyDoc_STRVAR(retarget_doc,
"retarget(id, host, port, pt, sending) -> bool\n\n"
"A re-INVITE or a latched source moved the destination (or the payload type, or hold).");

static PyObject *pace_retarget(PyObject *self, PyObject *args) {
    unsigned long long id;
    const char *host;
    int port, pt, sending;
    struct sockaddr_storage dest;
    socklen_t len;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ksiip", &id, &host, &port, &pt, &sending)) return NULL;
    if (parse_dest(host, port, &dest, &len) != 0) return NULL;
    pthread_mutex_lock(&lock);
    Job *job = vec_find(&active, id, NULL);
    if (job == NULL) job = vec_find(&waiting, id, NULL);
    if (job != NULL) {
        job->dest = dest;
        job->dest_len = len;
        job->pt = (unsigned char)(pt & 0x7F);
        job->sending = sending;
    }
    pthread_mutex_unlock(&lock);
    return PyBool_FromLong(job != NULL);
}

PyDoc_STRVAR(progress_doc,
"progress(id) -> (packets, octets) sent so far, or None once it ended (for RTCP reports)");

static PyObject *pace_progress(PyObject *self, PyObject *arg) {
    (void)self;
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    long long packets = 0, octets = 0;
    pthread_mutex_lock(&lock);
    Job *job = vec_find(&active, id, NULL);
    if (job == NULL) job = vec_find(&waiting, id, NULL);
    if (job != NULL) {
        packets = job->packets;
        octets = job->octets;
    }
    pthread_mutex_unlock(&lock);
    if (job == NULL) Py_RETURN_NONE;
    return Py_BuildValue("(LL)", packets, octets);
}

PyDoc_STRVAR(drain_doc,
"drain() -> list of events, oldest first\n\n"
"(0, id, first_frame_sent_at, first_frame_due) or (1, id, ended_at, interrupted, frames, samples, packets,\n"
"octets, withheld, slips, send_errors, state) with state (seq, ts, due, marker) of the next\n"
"frame, or None for a job cancelled before it began. Times are time.monotonic() seconds.");

static PyObject *pace_drain(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    uint64_t count;
    ssize_t r = read(event_fd, &count, sizeof count); /* non-blocking: EAGAIN when none */
    (void)r;
    pthread_mutex_lock(&lock);
    Event *taken = events;
    size_t n = n_events;
    events = NULL;
    n_events = cap_events = 0;
    pthread_mutex_unlock(&lock);
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        Event *ev = &taken[i];
        PyObject *item;
        if (out == NULL) {
            Py_XDECREF(ev->payload);
            continue;
        }
        if (ev->kind == EV_FIRST) {
            item = Py_BuildValue("(iKdd)", EV_FIRST, (unsigned long long)ev->id, ev->when / 1e9,
                                 ev->due / 1e9);
        } else {
            PyObject *state;
            if (ev->state_valid)
                state = Py_BuildValue("(kkdO)", (unsigned long)ev->seq, (unsigned long)ev->ts,
                                      ev->due / 1e9, ev->marker ? Py_True : Py_False);
            else
                state = Py_NewRef(Py_None);
            item = state == NULL ? NULL
                : Py_BuildValue("(iKdOLLLLLLLN)", EV_DONE, (unsigned long long)ev->id,
                                ev->when / 1e9, ev->interrupted ? Py_True : Py_False,
                                (long long)ev->frames, (long long)ev->samples,
                                (long long)ev->packets, (long long)ev->octets,
                                (long long)ev->withheld, (long long)ev->slips,
                                (long long)ev->errors, state);
            Py_XDECREF(ev->payload);
        }
        if (item == NULL) {
            Py_CLEAR(out);
            continue;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    free(taken);
    return out;
}

static PyObject *pace_fileno(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(event_fd);
}

static PyObject *pace_now(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyFloat_FromDouble(clock_ns() / 1e9);
}

PyDoc_STRVAR(stats_doc, "stats() -> (jobs playing, jobs waiting, thread wake-ups, worst lateness s)");

static PyObject *pace_stats(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    pthread_mutex_lock(&lock);
    PyObject *out = Py_BuildValue("(nnKd)", (Py_ssize_t)active.len, (Py_ssize_t)waiting.len,
                                  (unsigned long long)wakeups, max_late_ns / 1e9);
    pthread_mutex_unlock(&lock);
    return out;
}

static PyObject *pace_realtime(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    pthread_mutex_lock(&lock);
    int rt = realtime;
    pthread_mutex_unlock(&lock);
    return PyBool_FromLong(rt);
}

PyDoc_STRVAR(set_granularity_doc,
"set_granularity(seconds): the thread wakes at most once per this (default 0.002)");

static PyObject *pace_set_granularity(PyObject *self, PyObject *arg) {
    (void)self;
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) return NULL;
    if (seconds < 0 || seconds > 0.02) {
        PyErr_SetString(PyExc_ValueError, "granularity must be within 0..0.02 s");
        return NULL;
    }
    pthread_mutex_lock(&lock);
    granularity_ns = seconds_to_ns(seconds);
    pthread_mutex_unlock(&lock);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))pace_start, METH_VARARGS | METH_KEYWORDS, start_doc},
    {"cancel", pace_cancel, METH_VARARGS, cancel_doc},
    {"retarget", pace_retarget, METH_VARARGS, retarget_doc},
    {"drain", pace_drain, METH_NOARGS, drain_doc},
    {"progress", pace_progress, METH_O, progress_doc},
    {"fileno", pace_fileno, METH_NOARGS, "the eventfd that is readable while events wait"},
    {"now", pace_now, METH_NOARGS, "the thread's clock (CLOCK_MONOTONIC), in seconds"},
    {"stats", pace_stats, METH_NOARGS, stats_doc},
    {"set_granularity", pace_set_granularity, METH_O, set_granularity_doc},
    {"realtime", pace_realtime, METH_NOARGS,
     "whether the thread runs SCHED_FIFO (False also before it started)"},
    {NULL, NULL, 0, NULL},
};

static void after_fork_in_child(void) {
    /* the thread does not exist in a child: start afresh (jobs and events belonged to the
     * parent's sockets; their payload references are leaked rather than touched) */
    pthread_mutex_init(&lock, NULL);
    running = 0;
    realtime = 0;
    active.len = waiting.len = 0;
    events = NULL;
    n_events = cap_events = 0;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pace",
    "RTP prompts paced by one native thread (see the C source's opening comment).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pace(void) {
    if (event_fd < 0) {
        event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (event_fd < 0) return PyErr_SetFromErrno(PyExc_OSError);
        pthread_atfork(NULL, NULL, after_fork_in_child);
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "MAX_BURST", MAX_BURST) < 0 ||
        PyModule_AddIntConstant(m, "MAX_FRAME", MAX_FRAME) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
