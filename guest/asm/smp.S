/*
 * smp.S: the `smp` guest's BSP side.
 *
 * Checks the boot info, prints "cpu 0 online" for itself, counts the CPUs in
 * the MP table and cross-checks boot_info.cpu_count (exit 3 on a mismatch),
 * then starts each AP in turn with INIT-SIPI-SIPI and waits for it to check
 * in (see trampoline.S). Ends with "smp: N of M cpus online" and exit 0 when
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
 * start_aps(): stores the BSP's CR3, EFER and CR0 for the trampoline, then
 * starts every listed CPU but the BSP, one at a time; stops at the first AP
 * that does not check in.
 */
FUNCTION(start_aps)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %cr3, %rax
    mov     %rax, tramp_cr3(%rip)
    mov     %cr0, %rax
    mov     %rax, tramp_cr0(%rip)
    mov     $MSR_EFER, %ecx
    rdmsr
    and     $~EFER_LMA, %eax
    or      $EFER_LME, %eax
    mov     %eax, tramp_efer(%rip)
    mov     %edx, tramp_efer + 4(%rip)
    xor     %r12d, %r12d                /* index into cpu_apic_ids */
1:  cmp     cpu_total(%rip), %r12d
    jae     3f
    lea     cpu_apic_ids(%rip), %rax
    movzbl  (%rax,%r12), %ebx
    cmp     bsp_apic_id(%rip), %ebx
    je      2f
    mov     %ebx, %edi
    mov     %r12d, %esi
    call    start_ap
    test    %eax, %eax
    jnz     4f
2:  inc     %r12d
    jmp     1b
4:  call    serial_lock
    lea     msg_no_checkin1(%rip), %rdi
    call    serial_puts
    mov     %ebx, %edi
    call    print_dec
    lea     msg_no_checkin2(%rip), %rdi
    call    serial_puts
    call    serial_unlock
3:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(start_aps)

/*
 * start_ap(apic_id = %edi, slot = %esi) -> %eax: gives the AP stack `slot`,
 * sends INIT, SIPI, SIPI and waits for it to check in. 0 = online, 1 = timed
 * out. Exits the VM with status 4 if an IPI is never delivered.
 */
FUNCTION(start_ap)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %edi, %ebx
    lea     1(%rsi), %eax               /* stack top = ap_stacks + (slot + 1) * 4 KiB */
    shl     $AP_STACK_SHIFT, %rax
    lea     ap_stacks(%rip), %rcx
    add     %rcx, %rax
    mov     %rax, tramp_stack_top(%rip)
    mov     cpus_online(%rip), %r12d
    inc     %r12d                       /* the count once this AP is in */
    mov     %ebx, %edi
    mov     $ICR_INIT_ASSERT, %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     8f
    mov     $IPI_DELAY, %edi
    call    delay
    mov     %ebx, %edi
    mov     $(ICR_STARTUP | SIPI_VECTOR), %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     8f
    mov     $IPI_DELAY, %edi
    call    delay
    mov     %ebx, %edi
    mov     $(ICR_STARTUP | SIPI_VECTOR), %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     8f
    mov     %r12d, %edi
    call    wait_for_online
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
8:  call    serial_lock
    lea     msg_ipi_timeout(%rip), %rdi
    call    serial_puts
    mov     %ebx, %edi
    call    print_dec
    lea     msg_newline(%rip), %rdi
    call    serial_puts
    call    serial_unlock
    mov     $EXIT_IPI_TIMEOUT, %edi
    call    exit_guest
END(start_ap)

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
    push    %rbx
    mov     %edi, %ebx
    call    serial_lock
    lea     msg_cpu(%rip), %rdi
    call    serial_puts
    mov     %ebx, %edi
    call    print_dec
    lea     msg_online(%rip), %rdi
    call    serial_puts
    call    serial_unlock
    pop     %rbx
    pop     %rbp
    ret
END(print_cpu_online)

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
OBJECT(cpus_online)
    .long 1                             /* CPUs checked in, the BSP included */
END(cpus_online)
OBJECT(cpu_total)
    .long 0                             /* enabled processors in the MP table */
END(cpu_total)
OBJECT(bsp_apic_id)
    .long 0
END(bsp_apic_id)

    .bss
    .p2align 12
OBJECT(ap_stacks)
    .space MAX_CPUS << AP_STACK_SHIFT   /* 4 KiB per CPU, by MP table slot */
END(ap_stacks)
