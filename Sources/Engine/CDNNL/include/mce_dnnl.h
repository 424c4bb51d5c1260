#ifndef MCE_DNNL_H
#define MCE_DNNL_H
// A small C layer over oneDNN's C API (Debian's libdnnl-dev, oneDNN 2.x): matrix products in bf16 (AVX-512 BF16
// or AMX) or f32, f32 accumulation and f32 outputs. Every call runs single-threaded on the calling thread: the
// engine's own worker pool (CWorkers) owns the cores and splits a product over its workers.
// Without oneDNN (Apple platforms) every function reports "unavailable" and the engine keeps its f32 BLAS path.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when oneDNN is linked and its CPU engine was created.
int mce_dnnl_available(void);
/// 1 when oneDNN runs bf16 matrix products natively on this CPU (AVX-512 BF16 or AMX).
int mce_dnnl_bf16_native(void);
/// oneDNN's version and the instruction set it dispatches to, e.g. "oneDNN 2.6.3, avx512_core_bf16".
const char *mce_dnnl_describe(void);

/// Round-to-nearest-even conversions between f32 and bf16 (stored as uint16_t). NaN stays NaN.
void mce_f32_to_bf16(const float *x, uint16_t *y, long n);
void mce_bf16_to_f32(const uint16_t *x, float *y, long n);
/// Rows of a strided f32 matrix to a dense bf16 one: y[r*cols + c] = bf16(x[r*ldx + c]).
void mce_f32_to_bf16_rows(const float *x, long ldx, uint16_t *y, long rows, long cols);

/// A matrix product with a constant right-hand side B [K×N], packed once into oneDNN's preferred layout.
typedef struct mce_dnnl_mm mce_dnnl_mm;

/// Packs B, read as f32 (or bf16 when `b_is_bf16`) at b[k*sk + n*sn] (so Wᵀ of a row-major [N, K] weight is
/// sk = 1, sn = K). `bf16`: compute in bf16 (A must then be given in bf16). NULL with a message on failure.
mce_dnnl_mm *mce_dnnl_mm_create(long K, long N, const void *b, int b_is_bf16, long sk, long sn, int bf16,
                                char *err, size_t errlen);
/// C[M×N] (row stride ldc) = A[M×K] (row stride lda; bf16 or f32 as packed) · B, plus bias[N] when given, plus
/// the old C when `accumulate`. Returns 0 on success.
int mce_dnnl_mm_run(mce_dnnl_mm *mm, long M, const void *a, long lda, float *c, long ldc, const float *bias,
                    int accumulate);
/// Bytes held by the packed B.
size_t mce_dnnl_mm_bytes(const mce_dnnl_mm *mm);
void mce_dnnl_mm_destroy(mce_dnnl_mm *mm);

/// C[M×N] = alpha · A · B (+ C when `accumulate`), both operands given per call (attention's QKᵀ and PV):
/// A[m,k] at a[m*sam + k*sak], B[k,n] at b[k*sbk + n*sbn], bf16 when `bf16`, else f32. Primitives are cached
/// per shape and thread. Returns 0 on success.
int mce_dnnl_gemm(long M, long N, long K, float alpha, const void *a, long sam, long sak, const void *b, long sbk,
                  long sbn, float *c, long ldc, int bf16, int accumulate);

#ifdef __cplusplus
}
#endif
#endif
