# The parallel driver of the compiled kernels: run_blocks(fn, job, blocks, threads).
#
# Why not an OpenMP parallel region: a region ends when every thread of its team has arrived at its closing barrier.
# When another process shares a core with one of the team (the image loader's decoding threads, CI, a second job),
# the OS runs that thread only part of the time, and every region it belongs to waits for it, however the blocks
# inside are shared out: issue 27 measured MNIST training on two threads at 0.56x of one thread with one core busy.
#
# Here the caller posts a job (a block function, its arguments, a count of blocks) and takes blocks itself at once;
# helpers woken for the job take blocks too, one at a time, under a lock, until none is left. The caller returns as
# soon as every block is done, so a helper that wakes late finds nothing to do and delays nobody, and one that is
# descheduled while it holds a block delays the call by that block only. Helpers spin a little after a job (back to
# back calls find them awake), then sleep on a condition variable; a helper that the OS took off its core against its
# will since its last job (an involuntary context switch, counted by getrusage) sleeps at once for its next 512 jobs:
# beside another busy process, a spinning helper is a third runnable thread on two cores and slows the caller's own
# serial work (busy MNIST step 24.1/22.4/19.7 -> 18.2/18.7/15.5 ms, one thread 17.4-18.7; docs/performance.md).
# A call made while another thread's call owns the helpers runs all its blocks on its own thread. A child process
# after fork() starts without helpers and makes its own.
#
# The helpers are kept off the CPU their caller runs on (their affinity is the caller's less that CPU, set again
# when the caller moves; nothing changes where the process has one CPU). Otherwise the OS tends to wake a helper on
# the CPU of the thread that woke it: beside another busy process, the helper then took its own caller's core while
# the other process kept the second one. Busy MNIST (getrusage, 60 steps): the caller preempted 449-815 times and
# on a core 0.63-0.74 of the time before, 18-31 times and 0.91-0.98 after; the step 15.1-16.7 -> 12.5-15.4 ms.
#
# One driver serves every module of the process: the first module imported puts its driver into a capsule on
# fastconv._ext (share_driver(), called by each module as it loads) and the others use that one. With a driver per
# module, a training step's calls went from module to module (conv, pool, winograd, dense, ...): each call found
# its own module's helper asleep (~14 wake-ups a MNIST step) while the previous module's helper still spun out its
# ~0.3 ms on one of the two cores beside the caller and the current helper.
#
# A helper gives back its per-thread scratch (_scratch.pxd) of the module whose job it ran (the job's `after_job`)
# while that module holds more than it may keep, before the caller's run_blocks returns, as the caller does after
# run_blocks (trim_scratch).

from _scratch cimport thread_scratch_give_back, thread_scratch_over_limit

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdint.h>
    #include <sys/resource.h>
    #ifdef _OPENMP
    #include <omp.h>
    #endif

    typedef void (*fastconv_block_fn)(void* job, Py_ssize_t block);

    #define FASTCONV_MAX_HELPERS 255
    /* pause instructions a helper (and a caller waiting for the last blocks) spins before it sleeps: ~0.3 ms on an
       AMD EPYC (28 ns a pause), about as long as libgomp with GOMP_SPINCOUNT=10000; long enough that the next call
       of a training step finds the helpers awake (4,000 measured ~6 % slower on a quiet MNIST step), short enough to
       give a busy core back */
    #define FASTCONV_SPIN 10000
    /* jobs after a helper was taken off its core against its will during which it sleeps at once instead of
       spinning: spinning there keeps a third thread runnable on two cores beside another process, and the caller's
       own work between calls (Python, the serial kernels) then gets two thirds of a core. The jobs of every module
       count (~25 a MNIST step, ~20 steps): 64, right when each module had its own helper and a few jobs a step,
       made busy MNIST steps ~10 % slower with one driver (15.4-17.1 against 14.1-14.6 ms) */
    #define FASTCONV_CONTENDED_JOBS 512

    /* This thread's involuntary context switches so far (0 where the system does not count them per thread). */
    static long fastconv_preemptions(void) {
    #ifdef RUSAGE_THREAD
        struct rusage usage;
        if (getrusage(RUSAGE_THREAD, &usage) == 0) return usage.ru_nivcsw;
    #endif
        return 0;
    }

    typedef struct {
        pthread_mutex_t lock;       /* guards every field below; the spins read `generation`, `done` atomically */
        pthread_cond_t posted;      /* helpers sleep on it between jobs */
        pthread_cond_t finished;    /* the caller sleeps on it for the blocks helpers still hold */
        pthread_mutex_t owner;      /* one caller at a time */
        unsigned long generation;   /* +1 per job */
        fastconv_block_fn fn;
        void* job;
        void (*after_job)(void);    /* the posting module's scratch trim, run by a helper after its blocks */
        Py_ssize_t blocks, next_block, blocks_done;
        int helpers_wanted;         /* helpers 1..helpers_wanted may take this job's blocks (threads - 1) */
        int helpers_started;
        int helpers_sleeping;
        int caller_sleeping;
        int caller_cpu_plus1;       /* the CPU the helpers were last kept off (+1; 0: none yet) */
        pthread_t helper_threads[FASTCONV_MAX_HELPERS];
    } fastconv_driver_t;

    /* The capsule's name on fastconv._ext; a new one whenever fastconv_driver_t changes. */
    #define FASTCONV_DRIVER_CAPSULE "_shared_driver_v2"

    static fastconv_driver_t fastconv_own_driver = {
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
    static fastconv_driver_t* fastconv_driver = &fastconv_own_driver;  /* the process's, once share_driver() ran */

    static inline void fastconv_cpu_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield");
    #endif
    }

    static int thread_scratch_over_limit(void);
    static void thread_scratch_give_back(void);

    /* Take blocks of the current job until none is left; called and returns with the lock held. */
    static void fastconv_driver_take_blocks(fastconv_driver_t* d) {
        while (d->next_block < d->blocks) {
            Py_ssize_t block = d->next_block++;
            fastconv_block_fn fn = d->fn;
            void* job = d->job;
            pthread_mutex_unlock(&d->lock);
            fn(job, block);
            pthread_mutex_lock(&d->lock);
            __atomic_store_n(&d->blocks_done, d->blocks_done + 1, __ATOMIC_RELEASE);
            if (d->blocks_done == d->blocks && d->caller_sleeping) pthread_cond_signal(&d->finished);
        }
    }

    static void* fastconv_helper_main(void* arg) {
        fastconv_driver_t* d = fastconv_driver;
        int index = (int)(intptr_t)arg;
        unsigned long seen = 0;  /* a helper that starts after its job was posted joins it: taking is always safe */
        long preemptions = fastconv_preemptions();
        int unspun_jobs = 0;     /* jobs left after a preemption during which this helper sleeps at once */
        for (;;) {
            long now_preempted = fastconv_preemptions();
            if (now_preempted != preemptions) unspun_jobs = FASTCONV_CONTENDED_JOBS;
            preemptions = now_preempted;
            int spins = unspun_jobs > 0 ? (unspun_jobs--, 0) : FASTCONV_SPIN;
            for (int spin = 0; spin < spins && __atomic_load_n(&d->generation, __ATOMIC_ACQUIRE) == seen; spin++)
                fastconv_cpu_relax();
            pthread_mutex_lock(&d->lock);
            while (d->generation == seen) {
                d->helpers_sleeping++;
                pthread_cond_wait(&d->posted, &d->lock);
                d->helpers_sleeping--;
            }
            seen = d->generation;
            if (index <= d->helpers_wanted) {
                fastconv_driver_take_blocks(d);
                /* still under the lock that marked this helper's last block done, which the caller takes before it
                   returns: a caller that reads the module's scratch after its call sees every helper's trim */
                d->after_job();
            }
            pthread_mutex_unlock(&d->lock);
        }
        return NULL;
    }

    /* In a child after fork(): no helper survives, and the locks may have been held by threads that are gone. */
    static void fastconv_driver_after_fork(void) {
        fastconv_driver_t* d = fastconv_driver;
        pthread_mutex_init(&d->lock, NULL);
        pthread_cond_init(&d->posted, NULL);
        pthread_cond_init(&d->finished, NULL);
        pthread_mutex_init(&d->owner, NULL);
        d->helpers_started = d->helpers_sleeping = d->caller_sleeping = 0;
        d->blocks = d->next_block = d->blocks_done = 0;
    }

    /* At the module's import (the GIL held): use the driver on fastconv._ext if a module put one there, else put
       this module's there; its owner alone resets it in a child after fork(). -1 with a Python error if neither. */
    static int share_driver(void) {
        PyObject* package = PyImport_ImportModule("fastconv._ext");
        if (package == NULL) return -1;
        PyObject* capsule = PyObject_GetAttrString(package, FASTCONV_DRIVER_CAPSULE);
        int result = 0;
        if (capsule != NULL) {
            void* shared = PyCapsule_GetPointer(capsule, "fastconv._ext." FASTCONV_DRIVER_CAPSULE);
            if (shared == NULL) result = -1;
            else fastconv_driver = (fastconv_driver_t*)shared;
        } else if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
            capsule = PyCapsule_New(&fastconv_own_driver, "fastconv._ext." FASTCONV_DRIVER_CAPSULE, NULL);
            if (capsule == NULL || PyObject_SetAttrString(package, FASTCONV_DRIVER_CAPSULE, capsule) < 0) result = -1;
            else if (pthread_atfork(NULL, NULL, fastconv_driver_after_fork) != 0) {
                PyErr_SetString(PyExc_RuntimeError, "fastconv: cannot register the kernels' driver for fork()");
                result = -1;
            }
        } else {
            result = -1;
        }
        Py_XDECREF(capsule);
        Py_DECREF(package);
        return result;
    }

    /* What a helper does after its blocks of this module's job: give its scratch back while the module holds more
       than it may keep (the caller does the same after run_blocks, trim_scratch). */
    static void fastconv_trim_helper_scratch(void) {
        if (thread_scratch_over_limit()) thread_scratch_give_back();
    }

    /* Start helpers up to `count` (with the lock held); as many as the system gives. */
    static void fastconv_driver_start_helpers(fastconv_driver_t* d, int count) {
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) return;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        while (d->helpers_started < count) {
            pthread_t thread;
            if (pthread_create(&thread, &attr, fastconv_helper_main, (void*)(intptr_t)(d->helpers_started + 1)) != 0) break;
            d->helper_threads[d->helpers_started] = thread;
            d->helpers_started++;
            d->caller_cpu_plus1 = 0;
        }
        pthread_attr_destroy(&attr);
    }

    /* Keep the helpers off the CPU the caller runs on (with the lock held), so that a woken helper takes another
       CPU, or shares it with another process, instead of preempting its own caller. */
    static void fastconv_keep_helpers_off_caller_cpu(fastconv_driver_t* d) {
    #ifdef __linux__
        int cpu = sched_getcpu();
        if (cpu < 0 || cpu + 1 == d->caller_cpu_plus1) return;
        d->caller_cpu_plus1 = cpu + 1;
        cpu_set_t mask;
        if (sched_getaffinity(0, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) < 2 || !CPU_ISSET(cpu, &mask)) return;
        CPU_CLR(cpu, &mask);
        for (int i = 0; i < d->helpers_started; i++) pthread_setaffinity_np(d->helper_threads[i], sizeof mask, &mask);
    #endif
    }

    /* fn(job, b) for every b in [0, blocks), on up to `threads` threads (the caller's among them); returns when all
       are done. A block must not depend on which thread runs it, nor on another block of the same call. */
    static void run_blocks(fastconv_block_fn fn, void* job, Py_ssize_t blocks, int threads) {
        fastconv_driver_t* d = fastconv_driver;
        if (threads > blocks) threads = (int)blocks;
        if (threads > FASTCONV_MAX_HELPERS + 1) threads = FASTCONV_MAX_HELPERS + 1;
        if (threads <= 1 || pthread_mutex_trylock(&d->owner) != 0) {
            for (Py_ssize_t block = 0; block < blocks; block++) fn(job, block);
            return;
        }
        pthread_mutex_lock(&d->lock);
        fastconv_driver_start_helpers(d, threads - 1);
        fastconv_keep_helpers_off_caller_cpu(d);
        d->fn = fn;
        d->job = job;
        d->after_job = fastconv_trim_helper_scratch;
        d->blocks = blocks;
        d->next_block = 0;
        __atomic_store_n(&d->blocks_done, 0, __ATOMIC_RELAXED);
        d->helpers_wanted = threads - 1;
        __atomic_store_n(&d->generation, d->generation + 1, __ATOMIC_RELEASE);
        if (d->helpers_sleeping) pthread_cond_broadcast(&d->posted);
        fastconv_driver_take_blocks(d);
        pthread_mutex_unlock(&d->lock);
        for (int spin = 0; spin < FASTCONV_SPIN && __atomic_load_n(&d->blocks_done, __ATOMIC_ACQUIRE) != blocks; spin++)
            fastconv_cpu_relax();
        pthread_mutex_lock(&d->lock);
        while (d->blocks_done != blocks) {
            d->caller_sleeping = 1;
            pthread_cond_wait(&d->finished, &d->lock);
            d->caller_sleeping = 0;
        }
        d->helpers_wanted = 0;
        pthread_mutex_unlock(&d->lock);
        pthread_mutex_unlock(&d->owner);
    }

    /* counter += amount, from any thread of a call */
    static inline void add_count(Py_ssize_t* counter, Py_ssize_t amount) { __atomic_add_fetch(counter, amount, __ATOMIC_RELAXED); }

    /* The thread count of loops that name none: the calling thread's OpenMP setting, which
       fastconv.backends.compiled sets on every call (build_info.set_default_threads). */
    static int default_threads(void) {
    #ifdef _OPENMP
        return omp_get_max_threads();
    #else
        return 1;
    #endif
    }
    """
    ctypedef void (*fastconv_block_fn)(void* job, Py_ssize_t block) noexcept nogil
    int share_driver() except -1
    void run_blocks(fastconv_block_fn fn, void* job, Py_ssize_t blocks, int threads) noexcept nogil
    int default_threads() noexcept nogil
    void add_count(Py_ssize_t* counter, Py_ssize_t amount) noexcept nogil


cdef inline Py_ssize_t blocks_for(Py_ssize_t items, int threads) noexcept nogil:
    """How many blocks to cut ``items`` equal pieces of work into for ``threads`` threads: four per thread, so that
    a thread the OS deschedules holds back a quarter of its share at most, and never more blocks than items."""
    return max(1, min(items, 4 * threads))
