/*
 * smp.S: the `smp` guest's BSP side.
 *
 * Checks the boot info, prints "cpu 0 online" for itself, counts the CPUs in
 * the MP table and cross-checks boot_info.cpu_count (exit 3 on a mismatch),
 * then starts each AP in turn with INIT-SIPI-SIPI and waits for it to check
 * in (aps.S, trampoline.S). Ends with "smp: N of M cpus online" and exit 0 when
 * N == M, 1 otherwise.
 */
#include "common.h"

    .text
    .code64

/* guest_main(boot_info = %rdi) -> %eax: exit status. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    mov     %rdi, %rbx
    cmpl    $BOOT_INFO_MAGIC, BI_MAGIC(%rbx)
    jne     8f
    call    lapic_enable
    call    lapic_id
    mov     %eax, bsp_apic_id(%rip)
    mov     %eax, %edi
    call    print_cpu_online
    call    mp_find
    test    %rax, %rax
    jz      7f
    mov     %rax, %rdi
    call    mp_parse
    test    %eax, %eax
    js      6f
    mov     %eax, cpu_total(%rip)
    cmp     BI_CPU_COUNT(%rbx), %eax
    jne     5f
    mov     bsp_apic_id(%rip), %edi
    call    cpu_listed
    test    %eax, %eax
    jz      4f
    call    start_aps
    call    print_summary
    mov     cpus_online(%rip), %eax
    cmp     cpu_total(%rip), %eax
    mov     $EXIT_OK, %eax
    je      9f
    mov     $EXIT_CPUS_MISSING, %eax
    jmp     9f
4:  lea     msg_bsp_unlisted(%rip), %rdi
    call    serial_puts
    jmp     6f
5:  lea     msg_mismatch1(%rip), %rdi   /* MP table and boot info disagree */
    call    serial_puts
    mov     cpu_total(%rip), %edi
    call    print_dec
    lea     msg_mismatch2(%rip), %rdi
    call    serial_puts
    mov     BI_CPU_COUNT(%rbx), %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    jmp     6f
7:  lea     msg_no_mp(%rip), %rdi
    call    serial_puts
6:  mov     $EXIT_MP_TABLE, %eax
    jmp     9f
8:  lea     msg_bad_boot_info(%rip), %rdi
    call    serial_puts
    mov     $EXIT_BAD_BOOT_INFO, %eax
9:  pop     %rbx
    pop     %rbp
    ret
END(guest_main)

/* cpu_listed(apic_id = %edi) -> %eax: 1 if the MP table lists apic_id, else 0. */
FUNCTION(cpu_listed)
    push    %rbp
    mov     %rsp, %rbp
    lea     cpu_apic_ids(%rip), %rdx
    mov     cpu_total(%rip), %ecx
    xor     %eax, %eax
    test    %ecx, %ecx
    jz      2f
1:  movzbl  (%rdx), %esi
    cmp     %edi, %esi
    je      3f
    inc     %rdx
    dec     %ecx
    jnz     1b
2:  pop     %rbp
    ret
3:  mov     $1, %eax
    pop     %rbp
    ret
END(cpu_listed)

/*
 * start_aps(): starts every listed CPU but the BSP, one at a time
 * (start_aps_listed, aps.S); stops at the first AP that does not check in.
 * Exits the VM with status 4 if an IPI is never delivered.
 */
FUNCTION(start_aps)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %rbx                        /* keeps %rsp 16-byte aligned */
    lea     cpu_apic_ids(%rip), %rdi
    mov     cpu_total(%rip), %esi
    lea     ap_stacks(%rip), %rdx
    mov     $AP_STACK_SHIFT, %ecx
    call    start_aps_listed
    test    %eax, %eax
    jz      9f
    mov     %eax, %ebx
    lea     cpu_apic_ids(%rip), %rcx
    movzbl  (%rcx,%rdx), %esi           /* the AP that failed */
    cmp     $EXIT_IPI_TIMEOUT, %ebx
    je      8f
    lea     msg_no_checkin1(%rip), %rdi
    lea     msg_no_checkin2(%rip), %rdx
    call    print_cpu_line
    jmp     9f
8:  lea     msg_ipi_timeout(%rip), %rdi
    lea     msg_newline(%rip), %rdx
    call    print_cpu_line
    mov     %ebx, %edi
    call    exit_guest
9:  pop     %rbx
    pop     %rbx
    pop     %rbp
    ret
END(start_aps)

/*
 * ap_main(): prints "cpu N online" (N = its APIC ID), then counts itself in
 * and halts for good. Printing first means the BSP, which waits for the
 * count, never prints its summary before an AP's line.
 */
FUNCTION(ap_main)
    push    %rbp
    mov     %rsp, %rbp
    call    lapic_id
    mov     %eax, %edi
    call    print_cpu_online
    lock incl cpus_online(%rip)
    call    halt_forever
END(ap_main)

/* print_cpu_online(apic_id = %edi): prints "cpu N online" under the serial lock. */
FUNCTION(print_cpu_online)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %esi
    lea     msg_cpu(%rip), %rdi
    lea     msg_online(%rip), %rdx
    call    print_cpu_line
    pop     %rbp
    ret
END(print_cpu_online)

/* print_cpu_line(prefix = %rdi, apic_id = %esi, suffix = %rdx): prints "<prefix>N<suffix>" under the serial lock. */
FUNCTION(print_cpu_line)
    push    %rbp
    mov     %rsp, %rbp
    push    %rdi                        /* -8(%rbp): prefix */
    push    %rsi                        /* -16(%rbp): apic_id */
    push    %rdx                        /* -24(%rbp): suffix */
    push    %rdx                        /* keeps %rsp 16-byte aligned */
    call    serial_lock
    mov     -8(%rbp), %rdi
    call    serial_puts
    mov     -16(%rbp), %edi
    call    print_dec
    mov     -24(%rbp), %rdi
    call    serial_puts
    call    serial_unlock
    mov     %rbp, %rsp
    pop     %rbp
    ret
END(print_cpu_line)

/* print_summary(): prints "smp: N of M cpus online" under the serial lock. */
FUNCTION(print_summary)
    push    %rbp
    mov     %rsp, %rbp
    call    serial_lock
    lea     msg_smp(%rip), %rdi
    call    serial_puts
    mov     cpus_online(%rip), %edi
    call    print_dec
    lea     msg_of(%rip), %rdi
    call    serial_puts
    mov     cpu_total(%rip), %edi
    call    print_dec
    lea     msg_cpus_online(%rip), %rdi
    call    serial_puts
    call    serial_unlock
    pop     %rbp
    ret
END(print_summary)

    .section .rodata
msg_cpu:            .asciz "cpu "
msg_online:         .asciz " online\n"
msg_smp:            .asciz "smp: "
msg_of:             .asciz " of "
msg_cpus_online:    .asciz " cpus online\n"
msg_newline:        .asciz "\n"
msg_bad_boot_info:  .asciz "smp: bad boot-info magic\n"
msg_no_mp:          .asciz "smp: no MP floating pointer found\n"
msg_mismatch1:      .asciz "smp: MP table lists "
msg_mismatch2:      .asciz " cpus but boot info says "
msg_bsp_unlisted:   .asciz "smp: the boot cpu is not in the MP table\n"
msg_no_checkin1:    .asciz "smp: cpu "
msg_no_checkin2:    .asciz " did not come online\n"
msg_ipi_timeout:    .asciz "smp: IPI not delivered (ICR stayed busy) to cpu "

    .data
    .p2align 2
OBJECT(cpu_total)
    .long 0                             /* enabled processors in the MP table */
END(cpu_total)

    .bss
    .p2align 12
OBJECT(ap_stacks)
    .space MAX_CPUS << AP_STACK_SHIFT   /* 4 KiB per CPU, by MP table slot */
END(ap_stacks)
