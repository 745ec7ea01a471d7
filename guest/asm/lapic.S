/*
 * lapic.S: interrupt-controller helpers for the guests that start APs (local
 * APIC as xAPIC MMIO at 0xfee00000): reading the APIC ID, software-enabling
 * the APIC, sending an IPI through the ICR, masking the legacy 8259s, and two
 * bounded waits (a fixed delay and an AP check-in wait).
 */
#include "common.h"

    .text
    .code64

/* lapic_id() -> %eax: this CPU's local APIC ID (ID register bits 31:24). */
FUNCTION(lapic_id)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    mov     LAPIC_ID(%rdx), %eax
    shr     $24, %eax
    pop     %rbp
    ret
END(lapic_id)

/* lapic_enable(): sets SVR to "enabled, spurious vector 0xff". */
FUNCTION(lapic_enable)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    mov     LAPIC_SVR(%rdx), %eax
    or      $SVR_ENABLE_SPURIOUS, %eax
    mov     %eax, LAPIC_SVR(%rdx)
    pop     %rbp
    ret
END(lapic_enable)

/*
 * apic_send_ipi(dest = %edi, icr_low = %esi) -> %eax: writes ICR high then
 * low, then waits (bounded) for the delivery status to clear. 0 = sent,
 * 1 = still busy after ICR_POLL_LIMIT reads.
 */
FUNCTION(apic_send_ipi)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    shl     $24, %edi
    mov     %edi, LAPIC_ICR_HI(%rdx)
    mov     %esi, LAPIC_ICR_LO(%rdx)
    call    apic_wait_icr
    pop     %rbp
    ret
END(apic_send_ipi)

/*
 * apic_wait_icr() -> %eax: waits (bounded) for the ICR's delivery status to
 * clear. 0 = idle, 1 = still busy after ICR_POLL_LIMIT reads.
 */
FUNCTION(apic_wait_icr)
    push    %rbp
    mov     %rsp, %rbp
    mov     $LAPIC_BASE, %edx
    mov     $ICR_POLL_LIMIT, %ecx
1:  mov     LAPIC_ICR_LO(%rdx), %eax
    test    $ICR_BUSY, %eax
    jz      2f
    pause
    dec     %ecx
    jnz     1b
    mov     $1, %eax
    pop     %rbp
    ret
2:  xor     %eax, %eax
    pop     %rbp
    ret
END(apic_wait_icr)

/* pic_mask(): masks every line of both 8259s (under --irqchip kvm they also reach LINT0). */
FUNCTION(pic_mask)
    push    %rbp
    mov     %rsp, %rbp
    mov     $0xff, %al
    out     %al, $PIC1_DATA
    out     %al, $PIC2_DATA
    pop     %rbp
    ret
END(pic_mask)

/* delay(n = %rdi): n pause iterations (n > 0). */
FUNCTION(delay)
    push    %rbp
    mov     %rsp, %rbp
1:  pause
    dec     %rdi
    jnz     1b
    pop     %rbp
    ret
END(delay)

/*
 * wait_for_online(target = %edi) -> %eax: waits until cpus_online >= target.
 * 0 = reached; 1 = timed out (CHECKIN_TSC_TIMEOUT TSC ticks or SPIN_LIMIT
 * iterations, whichever comes first).
 */
FUNCTION(wait_for_online)
    push    %rbp
    mov     %rsp, %rbp
    READ_TSC
    mov     $CHECKIN_TSC_TIMEOUT, %rsi
    add     %rax, %rsi                  /* deadline */
    mov     $SPIN_LIMIT, %ecx
1:  cmp     %edi, cpus_online(%rip)
    jae     2f
    pause
    READ_TSC
    cmp     %rsi, %rax
    jae     3f
    dec     %ecx
    jnz     1b
3:  mov     $1, %eax
    pop     %rbp
    ret
2:  xor     %eax, %eax
    pop     %rbp
    ret
END(wait_for_online)
