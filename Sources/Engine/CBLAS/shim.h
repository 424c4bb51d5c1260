#include <cblas.h>
// mallopt: the engine keeps freed activation buffers in the heap (see BLASThreads).
#include <malloc.h>
