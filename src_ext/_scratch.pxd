# Scratch memory each thread keeps across kernel calls.
#
# The kernels' per-thread blocks (im2col patches, Winograd's transformed tiles, partial kernel gradients) are
# megabytes each. Allocated and freed on every call, glibc maps and unmaps them, and every call pays for page
# faults, page clearing and, with the team's threads running, TLB shootdowns across the cores: perf showed 40 %
# of a VGG16 block5 kernel gradient in the kernel's MSR writes and cross-core calls. A thread here keeps the
# largest block it has needed in each slot until it exits (pthread key destructor), so after a network's first
# step no kernel allocates. Python threads calling kernels at once each have their own (it is per thread).

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>

    #define FASTCONV_SCRATCH_SLOTS 4

    typedef struct {
        void* block[FASTCONV_SCRATCH_SLOTS];
        size_t bytes[FASTCONV_SCRATCH_SLOTS];
    } fastconv_scratch_t;

    static pthread_key_t fastconv_scratch_key;
    static pthread_once_t fastconv_scratch_once = PTHREAD_ONCE_INIT;
    static int fastconv_scratch_key_made = 0;

    static void fastconv_scratch_destroy(void* scratch) {
        fastconv_scratch_t* own = (fastconv_scratch_t*)scratch;
        for (int slot = 0; slot < FASTCONV_SCRATCH_SLOTS; slot++) free(own->block[slot]);
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
            free(own->block[slot]);
            own->block[slot] = NULL;
            own->bytes[slot] = 0;
            if (posix_memalign(&own->block[slot], 64, bytes) != 0) { own->block[slot] = NULL; return NULL; }
            own->bytes[slot] = bytes;
        }
        return own->block[slot];
    }
    """
    void* thread_scratch(int slot, size_t bytes) noexcept nogil
