/*
 * mb_cpus.S: the processors of a machine booted through the multiboot door
 * (mb64.S), as an MP table the guests' own parser (mptable.S) reads.
 *
 * hvtrace writes an MP table listing every vCPU. A firmware's MP table may
 * not: SeaBIOS lists one processor per package, so QEMU's `-smp 4` (four
 * cores in one socket) shows one. The ACPI MADT lists them all, so
 * mb_cpus_from_acpi finds the RSDP (EBDA's first KiB, then 0xe0000-0xfffff),
 * the RSDT, the "APIC" table, and writes a minimal MP table (processor
 * entries only: the enabled local APICs, the BSP flagged) in bss; mp_find
 * returns it ahead of any other (mp_override). Without a MADT the
 * firmware's MP table stays what the guests see.
 */
#include "common.h"

#define RSDP_SIG_LO         0x20445352  /* "RSD " */
#define RSDP_SIG_HI         0x20525450  /* "PTR " */
#define MADT_SIG            0x43495041  /* "APIC" */
#define SDT_LENGTH          4
#define SDT_HEADER          36
#define MADT_ENTRIES        44
#define MADT_LAPIC          0           /* type 0: processor local APIC */
#define MPC_HEADER          44
#define MPE_SIZE            20
#define EBDA_SEG_PTR        0x40e

    .text
    .code64

/* rsdp_scan(start = %rdi, end = %rsi) -> %rax: a valid RSDP (16-byte aligned) in [start, end), or 0. */
FUNCTION(rsdp_scan)
    push    %rbp
    mov     %rsp, %rbp
1:  cmp     %rsi, %rdi
    jae     3f
    cmpl    $RSDP_SIG_LO, (%rdi)
    jne     2f
    cmpl    $RSDP_SIG_HI, 4(%rdi)
    jne     2f
    push    %rdi
    push    %rsi
    mov     $20, %esi                   /* the ACPI 1.0 part carries the checksum */
    call    mp_checksum
    pop     %rsi
    pop     %rdi
    test    %eax, %eax
    jnz     2f
    mov     %rdi, %rax
    pop     %rbp
    ret
2:  add     $16, %rdi
    jmp     1b
3:  xor     %eax, %eax
    pop     %rbp
    ret
END(rsdp_scan)

/* madt_find() -> %rax: the MADT, through the RSDP and RSDT, or 0. */
FUNCTION(madt_find)
    push    %rbp
    mov     %rsp, %rbp
    movzwl  EBDA_SEG_PTR, %edi
    shl     $4, %edi
    lea     1024(%rdi), %rsi
    test    %edi, %edi
    jz      1f
    call    rsdp_scan
    test    %rax, %rax
    jnz     2f
1:  mov     $0xe0000, %edi
    mov     $0x100000, %esi
    call    rsdp_scan
    test    %rax, %rax
    jz      9f
2:  mov     16(%rax), %edx              /* RSDT */
    test    %edx, %edx
    jz      8f
    mov     SDT_LENGTH(%rdx), %ecx
    add     %rdx, %rcx                  /* end of the RSDT */
    lea     SDT_HEADER(%rdx), %rdx
3:  lea     4(%rdx), %rax
    cmp     %rcx, %rax
    ja      8f
    mov     (%rdx), %eax                /* a table */
    test    %eax, %eax
    jz      4f
    cmpl    $MADT_SIG, (%rax)
    je      9f
4:  add     $4, %rdx
    jmp     3b
8:  xor     %eax, %eax
9:  pop     %rbp
    ret
END(madt_find)

/*
 * mb_cpus_from_acpi(bsp_apic_id = %edi) -> %eax: the number of enabled
 * processors the MADT lists (0 without one, or with none); with at least one,
 * mp_override points at an MP table listing them.
 */
FUNCTION(mb_cpus_from_acpi)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    mov     %edi, %r14d
    call    madt_find
    test    %rax, %rax
    jz      8f
    mov     SDT_LENGTH(%rax), %r12d
    add     %rax, %r12                  /* end of the MADT */
    lea     MADT_ENTRIES(%rax), %rbx
    lea     mb_mpc(%rip), %r13
    add     $MPC_HEADER, %r13           /* next processor entry */
    xor     %ecx, %ecx                  /* processors */
1:  lea     2(%rbx), %rax
    cmp     %r12, %rax
    ja      5f
    movzbl  1(%rbx), %edx               /* entry length */
    cmp     $2, %edx
    jb      5f                          /* malformed: stop */
    cmpb    $MADT_LAPIC, (%rbx)
    jne     4f
    testb   $1, 4(%rbx)                 /* enabled */
    jz      4f
    cmp     $MAX_CPUS, %ecx
    jae     5f
    movb    $0, (%r13)                  /* type: processor */
    movzbl  3(%rbx), %eax
    mov     %al, 1(%r13)                /* APIC ID */
    movb    $0x14, 2(%r13)              /* local APIC version */
    movb    $1, 3(%r13)                 /* enabled */
    cmp     %r14d, %eax
    jne     3f
    movb    $3, 3(%r13)                 /* enabled, BSP */
3:  add     $MPE_SIZE, %r13
    inc     %ecx
4:  add     %rdx, %rbx
    jmp     1b
5:  test    %ecx, %ecx
    jz      8f
    mov     %ecx, %ebx
    mov     %ecx, %edi
    call    mb_mp_seal
    mov     %ebx, %eax
    jmp     9f
8:  xor     %eax, %eax
9:  pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(mb_cpus_from_acpi)

/* mb_mp_seal(count = %edi): the MP table's headers and checksums around count processor entries. */
FUNCTION(mb_mp_seal)
    push    %rbp
    mov     %rsp, %rbp
    lea     mb_mpc(%rip), %r8
    movl    $0x504d4350, (%r8)          /* "PCMP" */
    imul    $MPE_SIZE, %edi, %eax
    add     $MPC_HEADER, %eax
    mov     %ax, 4(%r8)                 /* base table length */
    movb    $4, 6(%r8)                  /* spec revision 1.4 */
    mov     %di, 34(%r8)                /* entry count */
    movl    $LAPIC_BASE, 36(%r8)
    mov     %r8, %rdi
    movzwl  4(%r8), %esi
    call    mp_checksum
    neg     %eax
    mov     %al, 7(%r8)
    lea     mb_mpf(%rip), %rdi
    movl    $0x5f504d5f, (%rdi)         /* "_MP_" */
    mov     %r8d, 4(%rdi)
    movb    $1, 8(%rdi)                 /* 16 bytes */
    movb    $4, 9(%rdi)
    mov     $16, %esi
    push    %rdi
    call    mp_checksum
    pop     %rdi
    neg     %eax
    mov     %al, 10(%rdi)
    mov     %rdi, mp_override(%rip)
    pop     %rbp
    ret
END(mb_mp_seal)

    .bss
    .p2align 4
mb_mpf:
    .space  16
mb_mpc:
    .space  MPC_HEADER + MAX_CPUS * MPE_SIZE
