/*
 * cmdline.S: helpers for reading the boot command line (boot info
 * BI_CMDLINE_ADDR / BI_CMDLINE_LEN, not NUL-terminated), shared by the
 * guests that take options (spin, ipi-bench, xcall-lab): comparing a word
 * with a name, matching an `option=` prefix and reading a decimal number.
 */
#include "common.h"

#define PARSE_SATURATE      100000000   /* parse_uint's ceiling: above every option's range (spin's n= goes to 10^7) */

    .text
    .code64

/* word_equals(p = %rdi, len = %rsi, word = %rdx) -> %eax: 1 if [p, p + len) is the NUL-terminated word. */
FUNCTION(word_equals)
    push    %rbp
    mov     %rsp, %rbp
    add     %rdi, %rsi                  /* end */
    push    %rsi
    push    %rsi                        /* keeps %rsp 16-byte aligned */
    call    match_word                  /* the word, then nothing more */
    pop     %rsi
    pop     %rsi
    cmp     %rsi, %rax
    sete    %al
    movzbl  %al, %eax
    pop     %rbp
    ret
END(word_equals)

/*
 * match_word(p = %rdi, end = %rsi, prefix = %rdx) -> %rax: p past the
 * NUL-terminated prefix if [p, end) starts with it, else 0.
 */
FUNCTION(match_word)
    push    %rbp
    mov     %rsp, %rbp
1:  movzbl  (%rdx), %eax
    test    %eax, %eax
    jz      3f
    cmp     %rsi, %rdi
    jae     2f
    cmpb    %al, (%rdi)
    jne     2f
    inc     %rdi
    inc     %rdx
    jmp     1b
2:  xor     %eax, %eax
    pop     %rbp
    ret
3:  mov     %rdi, %rax
    pop     %rbp
    ret
END(match_word)

/*
 * parse_uint(p = %rdi, end = %rsi) -> %rax: the decimal number at p (0 if
 * none; saturates at PARSE_SATURATE), %rdx: the first byte not a digit.
 */
FUNCTION(parse_uint)
    push    %rbp
    mov     %rsp, %rbp
    xor     %eax, %eax
1:  cmp     %rsi, %rdi
    jae     2f
    movzbl  (%rdi), %ecx
    sub     $'0', %ecx
    cmp     $9, %ecx
    ja      2f
    imul    $10, %rax, %rax
    add     %rcx, %rax
    inc     %rdi
    cmp     $PARSE_SATURATE, %rax
    jbe     1b
    mov     $PARSE_SATURATE, %eax
    jmp     1b
2:  mov     %rdi, %rdx
    pop     %rbp
    ret
END(parse_uint)
