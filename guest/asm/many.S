/*
 * many.S: 10,000 tiny functions (many_fn_0 .. many_fn_9999), never called,
 * linked into the `spin-scale` guest so that the probe benchmark can arm 1,
 * 100 or 10,000 trap sites while timing the hits on one of them.
 */
#include "common.h"

    .text
    .code64

.altmacro
.macro MANY_FN n
    .p2align 4
    .globl  many_fn_\n
    .type   many_fn_\n, @function
many_fn_\n:
    push    %rbp
    pop     %rbp
    ret
    .size   many_fn_\n, . - many_fn_\n
.endm

    .set    many_i, 0
    .rept   10000
    MANY_FN %many_i
    .set    many_i, many_i + 1
    .endr
