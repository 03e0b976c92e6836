# Scratch memory each thread keeps across kernel calls.
#
# The kernels' per-thread blocks (im2col patches, Winograd's transformed tiles, partial kernel gradients) are
# megabytes each. Allocated and freed on every call, glibc maps and unmaps them, and every call pays for page
# faults, page clearing and, with the team's threads running, TLB shootdowns across the cores: perf showed 40 %
# of a VGG16 block5 kernel gradient in the kernel's MSR writes and cross-core calls. A thread here keeps the
# largest block it has needed in each slot until it exits (pthread key destructor), so after a network's first
# step no kernel allocates. Python threads calling kernels at once each have their own (it is per thread).
#
# What a module's threads keep between calls is bounded: after a call, while they hold more than the module's
# limit (fastconv.backends.buffers sets it from FASTCONV_BUFFER_POOL_BYTES), each thread that ran the call's blocks
# gives its blocks back (trim_scratch, and the driver's helpers after each job). A one-off large call, say the input
# gradient of a 512x512 batch, then leaves nothing behind, while a network's steady blocks, far below the limit, stay.

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>

    #define FASTCONV_SCRATCH_SLOTS 4

    typedef struct {
        void* block[FASTCONV_SCRATCH_SLOTS];
        size_t bytes[FASTCONV_SCRATCH_SLOTS];
    } fastconv_scratch_t;

    static size_t fastconv_scratch_limit = (size_t)256 << 20;  /* bytes this module's threads keep between calls */
    static size_t fastconv_scratch_held = 0;  /* bytes this module's threads hold now (atomic) */

    static void fastconv_scratch_free_slot(void** block, size_t* bytes) {
        free(*block);
        __atomic_sub_fetch(&fastconv_scratch_held, *bytes, __ATOMIC_RELAXED);
        *block = NULL;
        *bytes = 0;
    }

    static pthread_key_t fastconv_scratch_key;
    static pthread_once_t fastconv_scratch_once = PTHREAD_ONCE_INIT;
    static int fastconv_scratch_key_made = 0;

    static void fastconv_scratch_destroy(void* scratch) {
        fastconv_scratch_t* own = (fastconv_scratch_t*)scratch;
        for (int slot = 0; slot < FASTCONV_SCRATCH_SLOTS; slot++) fastconv_scratch_free_slot(&own->block[slot], &own->bytes[slot]);
        free(own);
    }

    static void fastconv_scratch_make_key(void) {
        fastconv_scratch_key_made = pthread_key_create(&fastconv_scratch_key, fastconv_scratch_destroy) == 0;
    }

    /* At least `bytes` of 64-byte aligned memory, this thread's own, kept for its next call; NULL if out of memory
       or `slot` is not one of the FASTCONV_SCRATCH_SLOTS. Its contents are whatever the last user left. */
    static void* thread_scratch(int slot, size_t bytes) {
        if (slot < 0 || slot >= FASTCONV_SCRATCH_SLOTS) return NULL;
        if (bytes == 0) bytes = 1;  /* a real block even then: NULL means out of memory */
        pthread_once(&fastconv_scratch_once, fastconv_scratch_make_key);
        if (!fastconv_scratch_key_made) return NULL;
        fastconv_scratch_t* own = (fastconv_scratch_t*)pthread_getspecific(fastconv_scratch_key);
        if (own == NULL) {
            own = (fastconv_scratch_t*)calloc(1, sizeof(fastconv_scratch_t));
            if (own == NULL || pthread_setspecific(fastconv_scratch_key, own) != 0) { free(own); return NULL; }
        }
        if (own->bytes[slot] < bytes) {
            fastconv_scratch_free_slot(&own->block[slot], &own->bytes[slot]);
            if (posix_memalign(&own->block[slot], 64, bytes) != 0) { own->block[slot] = NULL; return NULL; }
            own->bytes[slot] = bytes;
            __atomic_add_fetch(&fastconv_scratch_held, bytes, __ATOMIC_RELAXED);
        }
        return own->block[slot];
    }

    static int thread_scratch_over_limit(void) {
        return __atomic_load_n(&fastconv_scratch_held, __ATOMIC_RELAXED) > fastconv_scratch_limit;
    }

    /* Give back this thread's blocks while the module's threads hold more than they may keep. */
    static void thread_scratch_give_back(void) {
        if (!fastconv_scratch_key_made) return;
        fastconv_scratch_t* own = (fastconv_scratch_t*)pthread_getspecific(fastconv_scratch_key);
        for (int slot = 0; own != NULL && slot < FASTCONV_SCRATCH_SLOTS && thread_scratch_over_limit(); slot++)
            if (own->block[slot] != NULL) fastconv_scratch_free_slot(&own->block[slot], &own->bytes[slot]);
    }

    static size_t thread_scratch_held(void) { return __atomic_load_n(&fastconv_scratch_held, __ATOMIC_RELAXED); }
    static size_t thread_scratch_limit(void) { return fastconv_scratch_limit; }
    static void thread_scratch_set_limit(size_t bytes) { fastconv_scratch_limit = bytes; }
    """
    void* thread_scratch(int slot, size_t bytes) noexcept nogil
    bint thread_scratch_over_limit() noexcept nogil
    void thread_scratch_give_back() noexcept nogil
    size_t thread_scratch_held() noexcept nogil
    size_t thread_scratch_limit() noexcept nogil
    void thread_scratch_set_limit(size_t bytes) noexcept nogil


cdef inline void trim_scratch() noexcept nogil:
    """After a call's blocks: while the module holds more scratch than it may keep, the calling thread gives its back
    (the driver's helpers do the same after each job, see _driver.pxd). Costs nothing when under the limit."""
    if thread_scratch_over_limit():
        thread_scratch_give_back()


cdef inline object scratch_state(limit_bytes):
    """``(bytes held, limit)`` of this module's scratch; sets the limit first unless ``limit_bytes`` is None."""
    if limit_bytes is not None:
        thread_scratch_set_limit(<size_t>limit_bytes)
    return thread_scratch_held(), thread_scratch_limit()
