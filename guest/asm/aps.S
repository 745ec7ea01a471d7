/*
 * aps.S: starting the application processors, for every guest that runs
 * them (smp, spin, apic-conformance, ipi-bench, xcall-lab).
 *
 * The BSP copies the trampoline from where the image stores it (tramp_lma,
 * guest.ld) to the pages it runs at (0x8000 code, 0x9000 data) and stores
 * its CR3, CR0 and EFER for trampoline.S once (prepare_trampoline), then starts the APs one at a time: start_ap gives
 * an AP its stack (tramp_stack_top), sends INIT, SIPI, SIPI (vector
 * SIPI_VECTOR, the trampoline's page) and waits, bounded, until the AP has
 * counted itself into cpus_online. The AP comes up in trampoline.S, which
 * calls the guest's own ap_main on that stack; ap_main does
 * `lock incl cpus_online` once the AP is ready. start_aps_listed does that
 * for each processor of a list of APIC IDs (such as the MP table's), in
 * order, skipping the BSP; it tells each AP its index in the list through
 * ap_boot_slot.
 */
#include "common.h"

/* AP_IPI icr, busy: apic_send_ipi(%ebx, icr); jumps to busy if it stays undelivered. */
.macro AP_IPI icr:req, busy:req
    mov     %ebx, %edi
    mov     $(\icr), %esi
    call    apic_send_ipi
    test    %eax, %eax
    jnz     \busy
.endm

    .text
    .code64

/*
 * prepare_trampoline(): copies the trampoline down to 0x8000/0x9000, then
 * stores the BSP's CR3, CR0 and EFER (LME set, LMA clear) for trampoline.S.
 */
FUNCTION(prepare_trampoline)
    push    %rbp
    mov     %rsp, %rbp
    mov     $tramp_lma, %esi
    mov     $TRAMPOLINE_ADDR, %edi
    mov     $tramp_text_size, %ecx
    rep movsb
    mov     $(tramp_lma + 0x1000), %esi
    mov     $(TRAMPOLINE_ADDR + 0x1000), %edi
    mov     $tramp_data_size, %ecx
    rep movsb
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
    pop     %rbp
    ret
END(prepare_trampoline)

/*
 * start_ap(apic_id = %edi, stack_top = %rsi) -> %eax: starts one AP on the
 * stack ending at stack_top (prepare_trampoline must have run) and waits for
 * it to check in. 0 = online; 1 = it did not check in (wait_for_online timed
 * out); EXIT_IPI_TIMEOUT = the INIT or a SIPI stayed undelivered.
 */
FUNCTION(start_ap)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %edi, %ebx
    mov     %rsi, tramp_stack_top(%rip)
    mov     cpus_online(%rip), %r12d
    inc     %r12d                       /* the count once this AP is in */
    AP_IPI  ICR_INIT_ASSERT, 8f
    mov     $IPI_DELAY, %edi
    call    delay
    AP_IPI  ICR_STARTUP | SIPI_VECTOR, 8f
    mov     $IPI_DELAY, %edi
    call    delay
    AP_IPI  ICR_STARTUP | SIPI_VECTOR, 8f
    mov     %r12d, %edi
    call    wait_for_online
    jmp     9f
8:  mov     $EXIT_IPI_TIMEOUT, %eax
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(start_ap)

/*
 * start_aps_listed(apic_ids = %rdi, count = %esi, stacks = %rdx,
 * stack_shift = %ecx) -> %eax, %edx: prepares the trampoline, then starts
 * the processor of each u8 apic_ids[i], i = 0 .. count - 1, but the BSP
 * (bsp_apic_id), in order, with start_ap: AP i finds i in ap_boot_slot and
 * runs on the stack ending at stacks + ((i + 1) << stack_shift). Stops at
 * the first AP that fails. %eax = 0 when all are online (%edx = count), else
 * start_ap's status for the AP that failed (%edx = its index i).
 */
FUNCTION(start_aps_listed)
    push    %rbp
    mov     %rsp, %rbp
    push    %rdi                        /* -8(%rbp): apic_ids */
    push    %rsi                        /* -16(%rbp): count */
    push    %rdx                        /* -24(%rbp): stacks */
    push    %rcx                        /* -32(%rbp): stack_shift */
    push    %rbx                        /* -40(%rbp): the caller's %rbx */
    push    %rbx                        /* keeps %rsp 16-byte aligned */
    call    prepare_trampoline
    xor     %ebx, %ebx                  /* index into apic_ids */
1:  cmp     -16(%rbp), %ebx
    jae     7f
    mov     -8(%rbp), %rax
    movzbl  (%rax,%rbx), %edi
    cmp     bsp_apic_id(%rip), %edi
    je      2f
    mov     %ebx, ap_boot_slot(%rip)
    lea     1(%rbx), %esi               /* stack top = stacks + (i + 1) << stack_shift */
    mov     -32(%rbp), %ecx
    shl     %cl, %rsi
    add     -24(%rbp), %rsi
    call    start_ap
    test    %eax, %eax
    jnz     8f
2:  inc     %ebx
    jmp     1b
7:  xor     %eax, %eax
8:  mov     %ebx, %edx
    mov     -40(%rbp), %rbx
    mov     %rbp, %rsp
    pop     %rbp
    ret
END(start_aps_listed)

    .data
    .p2align 2
OBJECT(cpus_online)
    .long 1                             /* CPUs checked in, the BSP included (wait_for_online, lapic.S) */
END(cpus_online)
OBJECT(bsp_apic_id)
    .long 0                             /* set by the guest before it starts APs */
END(bsp_apic_id)
OBJECT(ap_boot_slot)
    .long 0                             /* start_aps_listed: index of the AP being started */
END(ap_boot_slot)
