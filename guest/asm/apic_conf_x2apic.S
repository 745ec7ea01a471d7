/*
 * apic_conf_x2apic.S: `apic-conformance` check of the xAPIC <-> x2APIC mode
 * transitions on the BSP. It runs last: the APs stay in xAPIC mode and no
 * IPI goes to them meanwhile.
 *
 * x2apic_switch       Only if CPUID.1:ECX[21]. IA32_APIC_BASE (MSR 0x1B)
 *                     reads EN=1, EXTD=0, BSP=1, base 0xFEE00000. Setting
 *                     EXTD switches to x2APIC mode (SDM 10.12.1); then the
 *                     ID reads through MSR 0x802 as the same APIC ID, the
 *                     LDR (0x80D) is derived from it: (ID[31:4] << 16) |
 *                     (1 << ID[3:0]) (SDM 10.12.10.2), the version reads the
 *                     same through 0x803, reading the DFR (0x80E, absent in
 *                     x2APIC mode) and writing the read-only LDR or version
 *                     raise #GP (SDM 10.12.1.2); a fixed self IPI through the
 *                     SELF IPI MSR (0x83F), through the 64-bit ICR (0x830)
 *                     with the self shorthand and to the own ID each deliver
 *                     once (SDM 10.12.9, 10.12.11). Going back: x2APIC ->
 *                     xAPIC directly and x2APIC -> (EN=0, EXTD=1) raise #GP
 *                     and leave the mode unchanged; x2APIC -> disabled ->
 *                     xAPIC is legal, after which the MMIO ID register
 *                     holds the same ID and a self IPI works again
 *                     (SDM 10.12.5).
 */
#include "apic_conformance.h"

    .text
    .code64

/* check_x2apic_switch() -> %eax: RESULT_*. */
FUNCTION(check_x2apic_switch)
    CHECK_ENTER
    testl   $CPUID1_ECX_X2APIC, cpuid1_ecx(%rip)
    jnz     1f
    SKIP_MSG "CPUID.1:ECX[21] (x2APIC) is clear"
1:  cli
    mov     $MSR_APIC_BASE, %edi
    call    msr_read
    mov     %rax, %r12                  /* IA32_APIC_BASE in xAPIC mode */
    mov     %r12d, %eax
    and     $(APIC_BASE_EN | APIC_BASE_EXTD), %eax
    EXPECT_EQ %eax, $APIC_BASE_EN, "IA32_APIC_BASE EN and EXTD in xAPIC mode"
    mov     %r12d, %eax
    and     $APIC_BASE_BSP, %eax
    EXPECT_EQ %eax, $APIC_BASE_BSP, "IA32_APIC_BASE BSP flag on the boot cpu"
    mov     %r12d, %eax
    and     $0xfffff000, %eax
    EXPECT_EQ %eax, $LAPIC_BASE, "IA32_APIC_BASE base address"
    mov     $APIC_VERSION, %edi
    call    lapic_read
    mov     %eax, %r14d                 /* version through MMIO */
    mov     bsp_apic_id(%rip), %r13d

    mov     $MSR_APIC_BASE, %edi
    mov     %r12, %rsi
    or      $APIC_BASE_EXTD, %rsi
    call    msr_write_safe
    EXPECT_EQ %eax, $0, "#GP on the xAPIC -> x2APIC switch"
    movl    $1, %gs:PC_X2APIC
    mov     $MSR_APIC_BASE, %edi
    call    msr_read
    and     $(APIC_BASE_EN | APIC_BASE_EXTD), %eax
    EXPECT_EQ %eax, $(APIC_BASE_EN | APIC_BASE_EXTD), "IA32_APIC_BASE EN and EXTD after setting EXTD"
    mov     $MSR_X2APIC_ID, %edi
    call    msr_read
    EXPECT_EQ64 %rax, %r13, "x2APIC ID (MSR 0x802)"
    mov     %r13d, %ecx
    and     $15, %ecx
    mov     $1, %r15d
    shl     %cl, %r15d
    mov     %r13d, %eax
    shr     $4, %eax
    shl     $16, %eax
    or      %eax, %r15d                 /* the derived logical x2APIC ID */
    mov     $MSR_X2APIC_LDR, %edi
    call    msr_read
    EXPECT_EQ64 %rax, %r15, "x2APIC LDR (MSR 0x80d)"
    mov     $MSR_X2APIC_VERSION, %edi
    call    msr_read
    EXPECT_EQ64 %rax, %r14, "version through MSR 0x803 (expected the xAPIC version register)"
    mov     $MSR_X2APIC_DFR, %edi
    call    msr_read_safe
    EXPECT_EQ %edx, $1, "#GP on RDMSR 0x80e (no DFR in x2APIC mode)"
    mov     $MSR_X2APIC_LDR, %edi
    xor     %esi, %esi
    call    msr_write_safe
    EXPECT_EQ %eax, $1, "#GP on WRMSR to the read-only LDR (0x80d)"
    mov     $MSR_X2APIC_VERSION, %edi
    xor     %esi, %esi
    call    msr_write_safe
    EXPECT_EQ %eax, $1, "#GP on WRMSR to the read-only version (0x803)"
    mov     $MSR_X2APIC_LDR, %edi
    call    msr_read
    EXPECT_EQ64 %rax, %r15, "x2APIC LDR after the refused write"
    mov     $APIC_SVR, %edi
    mov     $SVR_ENABLE_SPURIOUS, %esi
    call    lapic_write
    sti
    mov     $MSR_X2APIC_SELF_IPI, %edi
    mov     $VEC_X2APIC_SELF, %esi
    call    msr_write
    WAIT_COUNT VEC_X2APIC_SELF, 1, "deliveries of 0xd1 through the SELF IPI MSR (0x83f)"
    xor     %edi, %edi
    mov     $(ICR_SELF | VEC_X2APIC_ICR), %esi
    call    ipi_send
    WAIT_COUNT VEC_X2APIC_ICR, 1, "deliveries of 0xd2 through ICR MSR 0x830 with the self shorthand"
    mov     %r13d, %edi
    mov     $VEC_X2APIC_PHYS, %esi
    call    ipi_send
    WAIT_COUNT VEC_X2APIC_PHYS, 1, "deliveries of 0xd3 through ICR MSR 0x830 to the own x2APIC ID"
    call    settle
    cli
    EXPECT_EQ COUNT(VEC_X2APIC_SELF), $1, "deliveries of 0xd1 in x2APIC mode"
    EXPECT_EQ COUNT(VEC_X2APIC_ICR), $1, "deliveries of 0xd2 in x2APIC mode"
    EXPECT_EQ COUNT(VEC_X2APIC_PHYS), $1, "deliveries of 0xd3 in x2APIC mode"

    mov     $MSR_APIC_BASE, %edi
    mov     %r12, %rsi                  /* EN=1, EXTD=0: x2APIC -> xAPIC, illegal */
    call    msr_write_safe
    EXPECT_EQ %eax, $1, "#GP on the x2APIC -> xAPIC switch"
    mov     $MSR_APIC_BASE, %edi
    mov     %r12, %rsi
    and     $~APIC_BASE_EN, %rsi
    or      $APIC_BASE_EXTD, %rsi       /* EN=0, EXTD=1: invalid state */
    call    msr_write_safe
    EXPECT_EQ %eax, $1, "#GP on the x2APIC -> (EN=0 EXTD=1) switch"
    mov     $MSR_APIC_BASE, %edi
    call    msr_read
    and     $(APIC_BASE_EN | APIC_BASE_EXTD), %eax
    EXPECT_EQ %eax, $(APIC_BASE_EN | APIC_BASE_EXTD), "IA32_APIC_BASE EN and EXTD after the refused switches"
    mov     $MSR_APIC_BASE, %edi
    mov     %r12, %rsi
    and     $~(APIC_BASE_EN | APIC_BASE_EXTD), %rsi
    call    msr_write_safe
    EXPECT_EQ %eax, $0, "#GP on the x2APIC -> disabled switch"
    movl    $0, %gs:PC_X2APIC
    mov     $MSR_APIC_BASE, %edi
    mov     %r12, %rsi
    call    msr_write_safe
    EXPECT_EQ %eax, $0, "#GP on the disabled -> xAPIC switch"
    mov     $MSR_APIC_BASE, %edi
    call    msr_read
    and     $(APIC_BASE_EN | APIC_BASE_EXTD), %eax
    EXPECT_EQ %eax, $APIC_BASE_EN, "IA32_APIC_BASE EN and EXTD back in xAPIC mode"
    mov     $APIC_ID, %edi
    call    lapic_read
    shr     $24, %eax
    EXPECT_EQ %eax, %r13d, "xAPIC ID register after x2APIC -> disabled -> xAPIC"
    mov     $APIC_SVR, %edi
    mov     $SVR_ENABLE_SPURIOUS, %esi
    call    lapic_write
    sti
    mov     $VEC_X2APIC_BACK, %edi
    call    ipi_self
    WAIT_COUNT VEC_X2APIC_BACK, 1, "deliveries of a self IPI through MMIO back in xAPIC mode"
    cli
    CHECK_PASS
END(check_x2apic_switch)
