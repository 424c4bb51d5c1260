#define _GNU_SOURCE
#include "mce_dnnl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Round-to-nearest-even f32 → bf16, written so the compiler vectorises it (AVX-512 BF16 has an instruction
// for it, but this loop is not where the time goes).
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // NaN stays a quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
// AVX-512 BF16's vcvtneps2bf16: 16 values per instruction, the same round-to-nearest-even (NaN stays NaN).
__attribute__((target("avx512f,avx512bf16,avx512vl"))) static void f32_to_bf16_avx512(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
        _mm256_storeu_si256((__m256i *)(y + i), (__m256i)v);
    }
    for (; i < n; i++) y[i] = f32_to_bf16(x[i]);
}

static int has_avx512bf16(void) {
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
    return cached;
}
#else
static int has_avx512bf16(void) { return 0; }
static void f32_to_bf16_avx512(const float *x, uint16_t *y, long n) { (void)x; (void)y; (void)n; }
#endif

void mce_f32_to_bf16(const float *x, uint16_t *y, long n) {
    if (has_avx512bf16()) { f32_to_bf16_avx512(x, y, n); return; }
    for (long i = 0; i < n; i++) y[i] = f32_to_bf16(x[i]);
}

void mce_bf16_to_f32(const uint16_t *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(&y[i], &u, 4);
    }
}

void mce_f32_to_bf16_rows(const float *x, long ldx, uint16_t *y, long rows, long cols) {
    for (long r = 0; r < rows; r++) mce_f32_to_bf16(x + r * ldx, y + r * cols, cols);
}

#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>

// libdnnl is built on OpenMP (libgomp). Every call here runs with one OpenMP thread: the engine's own worker
// pool splits products over the cores, so the two thread pools never compete.
extern void omp_set_num_threads(int);

static dnnl_engine_t engine;
static int engine_ok;
static char description[128] = "oneDNN unavailable";
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_engine(void) {
    engine_ok = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success;
    const dnnl_version_t *v = dnnl_version();
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    const char *name = "older than avx512_core";
    if ((isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx) name = "avx512_core_amx";
    else if ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16) name = "avx512_core_bf16";
    else if ((isa & dnnl_cpu_isa_avx512_core_vnni) == dnnl_cpu_isa_avx512_core_vnni) name = "avx512_core_vnni";
    else if ((isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core) name = "avx512_core";
    else if ((isa & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2) name = "avx2";
    snprintf(description, sizeof description, "oneDNN %d.%d.%d, %s", v->major, v->minor, v->patch, name);
}

int mce_dnnl_available(void) {
    pthread_once(&once, init_engine);
    return engine_ok;
}

int mce_dnnl_bf16_native(void) {
    if (!mce_dnnl_available()) return 0;
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
}

const char *mce_dnnl_describe(void) {
    pthread_once(&once, init_engine);
    return description;
}

// Per-thread state: a stream, the OpenMP thread count set once, and a scratchpad that only grows.
typedef struct {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_bytes;
} thread_state;

static _Thread_local thread_state *tls;

static thread_state *state(void) {
    if (tls) return tls;
    omp_set_num_threads(1);
    thread_state *s = calloc(1, sizeof *s);
    if (!s || dnnl_stream_create(&s->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        free(s);
        return NULL;
    }
    tls = s;
    return s;
}

static void *scratchpad(thread_state *s, size_t bytes) {
    if (bytes <= s->scratch_bytes) return s->scratch;
    free(s->scratch);
    s->scratch = aligned_alloc(64, (bytes + 63) / 64 * 64);
    s->scratch_bytes = s->scratch ? bytes : 0;
    return s->scratch;
}

static void md2d(dnnl_memory_desc_t *md, long rows, long cols, dnnl_data_type_t dt, long s0, long s1) {
    dnnl_dims_t dims = {rows, cols}, strides = {s0, s1};
    dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

// One compiled matmul: primitive, its scratchpad size, and what it was made for.
typedef struct prim_entry {
    long M, lda, ldc;
    int bias, accumulate;
    dnnl_primitive_t prim;
    size_t scratch;
    struct prim_entry *next;
} prim_entry;

struct mce_dnnl_mm {
    long K, N;
    int bf16;
    dnnl_memory_desc_t wmd;       // the packed layout
    void *packed;
    size_t bytes;
    pthread_mutex_t lock;
    prim_entry *prims;
};

static dnnl_primitive_attr_t make_attr(int accumulate, float alpha) {
    dnnl_primitive_attr_t attr;
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
    if (accumulate) {
        dnnl_post_ops_t po;
        dnnl_post_ops_create(&po);
        dnnl_post_ops_append_sum(po, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    return attr;
}

// A primitive for C[M×N] = A[M×K] · B with the given strides; weights md may be "any".
static dnnl_status_t make_matmul(dnnl_primitive_desc_t *pd, long M, long N, long K, dnnl_data_type_t dt,
                                 long sam, long sak, const dnnl_memory_desc_t *wmd, long ldc, int bias,
                                 int accumulate, float alpha) {
    dnnl_memory_desc_t amd, cmd, bmd;
    md2d(&amd, M, K, dt, sam, sak);
    md2d(&cmd, M, N, dnnl_f32, ldc, 1);
    dnnl_dims_t bd = {1, N};
    if (bias) dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t desc;
    dnnl_status_t st = dnnl_matmul_desc_init(&desc, &amd, wmd, bias ? &bmd : NULL, &cmd);
    if (st != dnnl_success) return st;
    dnnl_primitive_attr_t attr = make_attr(accumulate, alpha);
    st = dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static size_t scratch_size(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

mce_dnnl_mm *mce_dnnl_mm_create(long K, long N, const void *b, int b_is_bf16, long sk, long sn, int bf16,
                                char *err, size_t errlen) {
    if (!mce_dnnl_available()) { snprintf(err, errlen, "oneDNN's CPU engine could not be created"); return NULL; }
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    // Ask for the layout oneDNN prefers for a typical row count; the packed weights then serve every M.
    dnnl_memory_desc_t any;
    dnnl_dims_t wd = {K, N};
    dnnl_memory_desc_init_by_tag(&any, 2, wd, dt, dnnl_format_tag_any);
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = make_matmul(&pd, 256, N, K, dt, K, 1, &any, N, 0, 0, 1.0f);
    if (st != dnnl_success) {
        snprintf(err, errlen, "oneDNN has no %s matmul for K=%ld N=%ld (status %d)", bf16 ? "bf16" : "f32", K, N, (int)st);
        return NULL;
    }
    mce_dnnl_mm *mm = calloc(1, sizeof *mm);
    mm->K = K; mm->N = N; mm->bf16 = bf16;
    mm->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    mm->bytes = dnnl_memory_desc_get_size(&mm->wmd);
    mm->packed = aligned_alloc(64, (mm->bytes + 63) / 64 * 64);
    pthread_mutex_init(&mm->lock, NULL);
    // Reorder the source (f32 or bf16, strided) into the packed layout.
    dnnl_memory_desc_t src;
    md2d(&src, K, N, b_is_bf16 ? dnnl_bf16 : dnnl_f32, sk, sn);
    dnnl_primitive_desc_t rpd;
    st = dnnl_reorder_primitive_desc_create(&rpd, &src, engine, &mm->wmd, engine, NULL);
    thread_state *ts = state();
    if (st != dnnl_success || !mm->packed || !ts) {
        snprintf(err, errlen, "oneDNN could not pack a %ld×%ld matrix (status %d)", K, N, (int)st);
        free(mm->packed); free(mm);
        return NULL;
    }
    dnnl_primitive_t reorder;
    dnnl_primitive_create(&reorder, rpd);
    dnnl_memory_t msrc, mdst;
    dnnl_memory_create(&msrc, &src, engine, (void *)b);
    dnnl_memory_create(&mdst, &mm->wmd, engine, mm->packed);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, msrc}, {DNNL_ARG_TO, mdst}};
    st = dnnl_primitive_execute(reorder, ts->stream, 2, args);
    dnnl_stream_wait(ts->stream);
    dnnl_memory_destroy(msrc); dnnl_memory_destroy(mdst);
    dnnl_primitive_destroy(reorder); dnnl_primitive_desc_destroy(rpd);
    if (st != dnnl_success) {
        snprintf(err, errlen, "oneDNN reorder failed (status %d)", (int)st);
        free(mm->packed); free(mm);
        return NULL;
    }
    return mm;
}

size_t mce_dnnl_mm_bytes(const mce_dnnl_mm *mm) { return mm ? mm->bytes : 0; }

void mce_dnnl_mm_destroy(mce_dnnl_mm *mm) {
    if (!mm) return;
    for (prim_entry *e = mm->prims, *n; e; e = n) { n = e->next; dnnl_primitive_destroy(e->prim); free(e); }
    pthread_mutex_destroy(&mm->lock);
    free(mm->packed);
    free(mm);
}

static prim_entry *mm_entry(mce_dnnl_mm *mm, long M, long lda, long ldc, int bias, int accumulate) {
    pthread_mutex_lock(&mm->lock);
    prim_entry *e = mm->prims;
    for (; e; e = e->next)
        if (e->M == M && e->lda == lda && e->ldc == ldc && e->bias == bias && e->accumulate == accumulate) break;
    if (!e) {
        dnnl_primitive_desc_t pd;
        dnnl_status_t st = make_matmul(&pd, M, mm->N, mm->K, mm->bf16 ? dnnl_bf16 : dnnl_f32, lda, 1, &mm->wmd, ldc,
                                       bias, accumulate, 1.0f);
        if (st == dnnl_success) {
            e = calloc(1, sizeof *e);
            e->M = M; e->lda = lda; e->ldc = ldc; e->bias = bias; e->accumulate = accumulate;
            e->scratch = scratch_size(pd);
            if (dnnl_primitive_create(&e->prim, pd) != dnnl_success) { free(e); e = NULL; }
            dnnl_primitive_desc_destroy(pd);
            if (e) { e->next = mm->prims; mm->prims = e; }
        }
    }
    pthread_mutex_unlock(&mm->lock);
    return e;
}

static int execute(thread_state *ts, dnnl_primitive_t prim, size_t scratch, const dnnl_memory_desc_t *amd,
                   const void *a, const dnnl_memory_desc_t *bmd, const void *b, const dnnl_memory_desc_t *cmd,
                   float *c, const dnnl_memory_desc_t *biasmd, const float *bias) {
    void *sp = scratchpad(ts, scratch);
    if (scratch && !sp) return -1;
    dnnl_memory_t ma, mb, mc, mbias = NULL, msp = NULL;
    dnnl_memory_create(&ma, amd, engine, (void *)a);
    dnnl_memory_create(&mb, bmd, engine, (void *)b);
    dnnl_memory_create(&mc, cmd, engine, c);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    int n = 3;
    if (bias) {
        dnnl_memory_create(&mbias, biasmd, engine, (void *)bias);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mbias};
    }
    if (scratch) {
        dnnl_memory_desc_t smd;
        dnnl_dims_t sd = {(dnnl_dim_t)scratch};
        dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_a);
        dnnl_memory_create(&msp, &smd, engine, sp);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, msp};
    }
    dnnl_status_t st = dnnl_primitive_execute(prim, ts->stream, n, args);
    dnnl_stream_wait(ts->stream);
    dnnl_memory_destroy(ma); dnnl_memory_destroy(mb); dnnl_memory_destroy(mc);
    if (mbias) dnnl_memory_destroy(mbias);
    if (msp) dnnl_memory_destroy(msp);
    return st == dnnl_success ? 0 : -1;
}

int mce_dnnl_mm_run(mce_dnnl_mm *mm, long M, const void *a, long lda, float *c, long ldc, const float *bias,
                    int accumulate) {
    if (M <= 0) return 0;
    thread_state *ts = state();
    prim_entry *e = ts ? mm_entry(mm, M, lda, ldc, bias != NULL, accumulate) : NULL;
    if (!e) return -1;
    dnnl_memory_desc_t amd, cmd, bmd;
    md2d(&amd, M, mm->K, mm->bf16 ? dnnl_bf16 : dnnl_f32, lda, 1);
    md2d(&cmd, M, mm->N, dnnl_f32, ldc, 1);
    dnnl_dims_t bd = {1, mm->N};
    dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab);
    return execute(ts, e->prim, e->scratch, &amd, a, &mm->wmd, mm->packed, &cmd, c, &bmd, bias);
}

// Per-thread cache of general products (attention): a handful of shapes per model.
typedef struct gemm_entry {
    long M, N, K, sam, sak, sbk, sbn, ldc;
    float alpha;
    int bf16, accumulate;
    dnnl_primitive_t prim;
    size_t scratch;
    struct gemm_entry *next;
} gemm_entry;

static _Thread_local gemm_entry *gemm_cache;

int mce_dnnl_gemm(long M, long N, long K, float alpha, const void *a, long sam, long sak, const void *b, long sbk,
                  long sbn, float *c, long ldc, int bf16, int accumulate) {
    if (M <= 0 || N <= 0) return 0;
    if (!mce_dnnl_available()) return -1;
    thread_state *ts = state();
    if (!ts) return -1;
    dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    gemm_entry *e = gemm_cache;
    for (; e; e = e->next)
        if (e->M == M && e->N == N && e->K == K && e->sam == sam && e->sak == sak && e->sbk == sbk && e->sbn == sbn &&
            e->ldc == ldc && e->alpha == alpha && e->bf16 == bf16 && e->accumulate == accumulate) break;
    dnnl_memory_desc_t amd, bmd, cmd;
    md2d(&amd, M, K, dt, sam, sak);
    md2d(&bmd, K, N, dt, sbk, sbn);
    md2d(&cmd, M, N, dnnl_f32, ldc, 1);
    if (!e) {
        dnnl_primitive_desc_t pd;
        if (make_matmul(&pd, M, N, K, dt, sam, sak, &bmd, ldc, 0, accumulate, alpha) != dnnl_success) return -1;
        e = calloc(1, sizeof *e);
        *e = (gemm_entry){M, N, K, sam, sak, sbk, sbn, ldc, alpha, bf16, accumulate, NULL, scratch_size(pd), gemm_cache};
        dnnl_status_t st = dnnl_primitive_create(&e->prim, pd);
        dnnl_primitive_desc_destroy(pd);
        if (st != dnnl_success) { free(e); return -1; }
        gemm_cache = e;
    }
    return execute(ts, e->prim, e->scratch, &amd, a, &bmd, b, &cmd, c, NULL, NULL);
}

#else  // no oneDNN: the engine keeps its BLAS path

int mce_dnnl_available(void) { return 0; }
int mce_dnnl_bf16_native(void) { return 0; }
const char *mce_dnnl_describe(void) { return "oneDNN not built in"; }
mce_dnnl_mm *mce_dnnl_mm_create(long K, long N, const void *b, int b_is_bf16, long sk, long sn, int bf16,
                                char *err, size_t errlen) {
    (void)K; (void)N; (void)b; (void)b_is_bf16; (void)sk; (void)sn; (void)bf16;
    snprintf(err, errlen, "this build has no oneDNN");
    return NULL;
}
int mce_dnnl_mm_run(mce_dnnl_mm *mm, long M, const void *a, long lda, float *c, long ldc, const float *bias,
                    int accumulate) {
    (void)mm; (void)M; (void)a; (void)lda; (void)c; (void)ldc; (void)bias; (void)accumulate;
    return -1;
}
size_t mce_dnnl_mm_bytes(const mce_dnnl_mm *mm) { (void)mm; return 0; }
void mce_dnnl_mm_destroy(mce_dnnl_mm *mm) { (void)mm; }
int mce_dnnl_gemm(long M, long N, long K, float alpha, const void *a, long sam, long sak, const void *b, long sbk,
                  long sbn, float *c, long ldc, int bf16, int accumulate) {
    (void)M; (void)N; (void)K; (void)alpha; (void)a; (void)sam; (void)sak; (void)b; (void)sbk; (void)sbn; (void)c;
    (void)ldc; (void)bf16; (void)accumulate;
    return -1;
}
#endif
