/*
 * stats.S: statistics of timing samples (u64 TSC deltas), shared by the
 * guests that measure (ipi-bench, xcall-lab): sorting the samples in place,
 * the nearest-rank median and 99th percentile (the q-th percentile of n
 * sorted samples is sorted[ceil(q * n / 100) - 1]), converting TSC ticks to
 * nanoseconds and printing ` median=M p99=P`.
 */
#include "common.h"

    .text
    .code64

/*
 * sort_samples(a = %rdi, n = %esi): sorts the u64 array a[0..n) ascending in
 * place (Shell sort, Ciura's gaps: few instructions for a few thousand).
 */
FUNCTION(sort_samples)
    push    %rbp
    mov     %rsp, %rbp
    mov     %esi, %esi
    lea     shell_gaps(%rip), %r8
1:  mov     (%r8), %r9                  /* gap */
    mov     %r9, %rcx                   /* i = gap */
2:  cmp     %rsi, %rcx
    jae     5f
    mov     (%rdi,%rcx,8), %rax         /* v = a[i] */
    mov     %rcx, %rdx                  /* j = i */
3:  cmp     %r9, %rdx
    jb      4f
    mov     %rdx, %r10
    sub     %r9, %r10                   /* j - gap */
    mov     (%rdi,%r10,8), %r11
    cmp     %rax, %r11
    jbe     4f
    mov     %r11, (%rdi,%rdx,8)         /* a[j] = a[j - gap] */
    mov     %r10, %rdx
    jmp     3b
4:  mov     %rax, (%rdi,%rdx,8)
    inc     %rcx
    jmp     2b
5:  add     $8, %r8
    cmp     $1, %r9
    jne     1b
    pop     %rbp
    ret
END(sort_samples)

/*
 * median_p99(a = %rdi, n = %esi) -> %rax: median, %rdx: 99th percentile
 * (nearest rank) of the u64 samples a[0..n), n > 0, which it sorts in place
 * (so a[0] is then the minimum).
 */
FUNCTION(median_p99)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %rdi, %r12
    mov     %esi, %ebx
    call    sort_samples
    lea     1(%rbx), %eax               /* median: index ceil(n / 2) - 1 */
    shr     $1, %eax
    dec     %eax
    mov     (%r12,%rax,8), %r8
    imul    $99, %ebx, %eax             /* p99: index ceil(99 n / 100) - 1 */
    add     $99, %eax
    xor     %edx, %edx
    mov     $100, %ecx
    div     %ecx
    dec     %eax
    mov     (%r12,%rax,8), %rdx
    mov     %r8, %rax
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(median_p99)

/*
 * ticks_to_ns(ticks = %rdi, khz = %esi) -> %rax: ticks * 10^6 / khz, the
 * TSC ticks in nanoseconds at khz kHz; ticks itself if that quotient would
 * overflow, or when khz is 0 (not known, or the value is no tick count).
 */
FUNCTION(ticks_to_ns)
    push    %rbp
    mov     %rsp, %rbp
    mov     %rdi, %rax
    mov     $1000000, %ecx
    mul     %rcx                        /* %rdx:%rax = ticks * 10^6 */
    mov     %esi, %ecx
    cmp     %rcx, %rdx
    jae     1f                          /* quotient would overflow (always when khz = 0) */
    div     %rcx
    pop     %rbp
    ret
1:  mov     %rdi, %rax
    pop     %rbp
    ret
END(ticks_to_ns)

/* print_scaled(ticks = %rdi, khz = %esi): prints ticks_to_ns(ticks, khz) in decimal. */
FUNCTION(print_scaled)
    push    %rbp
    mov     %rsp, %rbp
    call    ticks_to_ns
    mov     %rax, %rdi
    call    print_dec
    pop     %rbp
    ret
END(print_scaled)

/*
 * print_median_p99(median = %rdi, p99 = %rsi, khz = %edx): prints
 * " median=M p99=P", both through print_scaled (khz = 0: as they are).
 */
FUNCTION(print_median_p99)
    push    %rbp
    mov     %rsp, %rbp
    push    %rdx                        /* the arguments, in the order they are used */
    push    %rsi
    push    %rdx
    push    %rdi
    PUTS    msg_median
    pop     %rdi
    pop     %rsi
    call    print_scaled
    PUTS    msg_p99
    pop     %rdi
    pop     %rsi
    call    print_scaled
    pop     %rbp
    ret
END(print_median_p99)

    .section .rodata
    .p2align 3
shell_gaps:
    .quad 1750, 701, 301, 132, 57, 23, 10, 4, 1
    .size shell_gaps, . - shell_gaps
msg_median:         .asciz " median="
msg_p99:            .asciz " p99="
