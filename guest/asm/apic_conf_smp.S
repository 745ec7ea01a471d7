/*
 * apic_conf_smp.S: `apic-conformance` checks that involve several CPUs.
 * With one CPU the checks still run their single-CPU cases (the APs' part
 * is empty), except ap_startup and lowest_priority, which SKIP.
 *
 * ap_startup          INIT, SIPI, SIPI (vector 0x08) brings every MP table
 *                     processor to 64-bit code; each AP's ID register and
 *                     CPUID initial APIC ID equal its MP table APIC ID
 *                     (SDM 8.4.4.1, 10.4.6).
 * icr_shorthands      Fixed IPIs with each ICR destination shorthand (SDM
 *                     10.6.1): self -> the sender only; all including self
 *                     -> every CPU; all excluding self -> every CPU but the
 *                     sender; none, physical destination -> the CPU with
 *                     that APIC ID (tried for each CPU); none, physical
 *                     0xFF -> broadcast to every CPU (SDM 10.6.2.1).
 * logical_flat        DFR = 0xFFFFFFFF (flat model), LDR[31:24] = bit n for
 *                     slot n: a logical IPI reaches exactly the CPUs whose
 *                     LDR bit is in the 8-bit destination (MDA & LDR != 0);
 *                     MDA 0xFF is a broadcast (SDM 10.6.2.2, 10.6.2.4).
 * logical_cluster     DFR = 0x0FFFFFFF (cluster model), LDR[31:28] =
 *                     cluster (slot & 1), LDR[27:24] = member bit
 *                     (1 << (slot >> 1)): a logical IPI reaches the CPUs of
 *                     cluster MDA[7:4] whose member bit is in MDA[3:0]
 *                     (SDM 10.6.2.2).
 * lowest_priority     Delivery mode 001 to a logical set reaches exactly one
 *                     CPU: the one at the lowest priority (TPR 0x10 on the
 *                     target, 0x40 on the others, nothing in service), for
 *                     each CPU as the target (SDM 10.6.2.4).
 * nmi                 Delivery mode 100 (NMI) to the own APIC ID is taken
 *                     through vector 2 even with IF=0 and without touching
 *                     the ISR; to another CPU it reaches that CPU's NMI
 *                     handler (SDM 10.6.1, 6.7.1).
 */
#include "apic_conformance.h"

    .text
    .code64

/* check_ap_startup() -> %eax: RESULT_*. */
FUNCTION(check_ap_startup)
    CHECK_ENTER
    mov     boot_info(%rip), %rax
    mov     BI_CPU_COUNT(%rax), %eax
    cmp     $MAX_TEST_CPUS, %eax
    jbe     1f
    mov     $MAX_TEST_CPUS, %eax
1:  EXPECT_EQ cpu_slots(%rip), %eax, "processors in the MP table (expected the boot-info cpu count)"
    cmpl    $2, cpu_slots(%rip)
    jae     2f
    SKIP_MSG "1 cpu (needs at least 2)"
2:  EXPECT_EQ ap_ipi_busy(%rip), $0, "INIT/SIPI delivery status stayed busy"
    mov     cpu_slots(%rip), %eax
    EXPECT_EQ cpus_online(%rip), %eax, "CPUs online after INIT-SIPI-SIPI"
    xor     %ebx, %ebx
3:  cmp     cpu_slots(%rip), %ebx
    jae     5f
    mov     %ebx, fail_cpu(%rip)
    mov     %ebx, %edi
    call    percpu_of
    mov     %rax, %r12
    mov     PC_APIC_ID(%r12), %r13d
    EXPECT_EQ PC_XAPIC_ID(%r12), %r13d, "ID register read by the CPU (expected its MP table APIC ID)"
    EXPECT_EQ PC_CPUID_ID(%r12), %r13d, "CPUID.1:EBX[31:24] on the CPU (expected its MP table APIC ID)"
    inc     %ebx
    jmp     3b
5:  movl    $-1, fail_cpu(%rip)
    CHECK_PASS
END(check_ap_startup)

/* bsp_bit() -> %eax: 1 << bsp_slot. */
FUNCTION(bsp_bit)
    push    %rbp
    mov     %rsp, %rbp
    mov     bsp_slot(%rip), %ecx
    mov     $1, %eax
    shl     %cl, %eax
    pop     %rbp
    ret
END(bsp_bit)

/* check_icr_shorthands() -> %eax: RESULT_*. */
FUNCTION(check_icr_shorthands)
    CHECK_ENTER
    sti
    call    zero_counts_all
    xor     %edi, %edi
    mov     $(ICR_SELF | VEC_SHORTHAND), %esi
    call    ipi_send
    call    bsp_bit
    EXPECT_DELIVERY VEC_SHORTHAND, %eax, "self shorthand: deliveries of 0xa1"
    call    zero_counts_all
    xor     %edi, %edi
    mov     $(ICR_ALL_INCL | VEC_SHORTHAND), %esi
    call    ipi_send
    EXPECT_DELIVERY VEC_SHORTHAND, online_mask(%rip), "all-including-self shorthand: deliveries of 0xa1"
    call    zero_counts_all
    xor     %edi, %edi
    mov     $(ICR_ALL_EXCL | VEC_SHORTHAND), %esi
    call    ipi_send
    call    bsp_bit
    not     %eax
    and     online_mask(%rip), %eax
    EXPECT_DELIVERY VEC_SHORTHAND, %eax, "all-excluding-self shorthand: deliveries of 0xa1"
    xor     %ebx, %ebx                  /* no shorthand, physical destination = each CPU */
1:  ONLINE_SLOT %ebx, 2f, 3f
    call    zero_counts_all
    mov     %ebx, %edi
    call    percpu_of
    mov     PC_APIC_ID(%rax), %edi
    mov     %rdi, fail_arg(%rip)
    mov     $VEC_SHORTHAND, %esi
    call    ipi_send
    mov     $1, %r12d
    mov     %ebx, %ecx
    shl     %cl, %r12d
    EXPECT_DELIVERY VEC_SHORTHAND, %r12d, "no shorthand: deliveries of 0xa1 to physical destination"
3:  inc     %ebx
    jmp     1b
2:  movq    $-1, fail_arg(%rip)
    call    zero_counts_all
    mov     $0xff, %edi
    mov     $VEC_SHORTHAND, %esi
    call    ipi_send
    EXPECT_DELIVERY VEC_SHORTHAND, online_mask(%rip), "no shorthand: deliveries of 0xa1 to physical broadcast 0xff"
    cli
    CHECK_PASS
END(check_icr_shorthands)

/* flat_ldr(slot = %edi) -> %eax: the flat-model LDR of slot (bit slot in 31:24). */
FUNCTION(flat_ldr)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %ecx
    mov     $1, %eax
    shl     %cl, %eax
    shl     $24, %eax
    pop     %rbp
    ret
END(flat_ldr)

/* cluster_ldr(slot = %edi) -> %eax: cluster (slot & 1) in 31:28, member bit (slot >> 1) in 27:24. */
FUNCTION(cluster_ldr)
    push    %rbp
    mov     %rsp, %rbp
    mov     %edi, %ecx
    shr     $1, %ecx
    and     $3, %ecx
    mov     $1, %eax
    shl     %cl, %eax
    mov     %edi, %edx
    and     $1, %edx
    shl     $4, %edx
    or      %edx, %eax
    shl     $24, %eax
    pop     %rbp
    ret
END(cluster_ldr)

/*
 * logical_expected(mda = %edi) -> %eax: the slots a logical IPI to mda must
 * reach under the current model (logical_cluster_mode): 0xff = all online;
 * otherwise those whose LDR matches (flat: MDA & LDR; cluster: same
 * cluster and MDA[3:0] & member bits).
 */
FUNCTION(logical_expected)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    mov     online_mask(%rip), %eax
    cmp     $0xff, %edi
    je      9f
    mov     %edi, %r12d
    xor     %r13d, %r13d                /* result */
    xor     %ebx, %ebx
1:  ONLINE_SLOT %ebx, 8f, 4f
    mov     %ebx, %edi
    cmpl    $0, logical_cluster_mode(%rip)
    jne     2f
    call    flat_ldr
    shr     $24, %eax
    test    %r12d, %eax
    jz      4f
    jmp     3f
2:  call    cluster_ldr
    shr     $24, %eax
    mov     %eax, %edx
    xor     %r12d, %edx
    test    $0xf0, %edx                 /* same cluster? */
    jnz     4f
    and     %r12d, %eax
    test    $0xf, %eax                  /* a member bit in the MDA? */
    jz      4f
3:  bts     %ebx, %r13d
4:  inc     %ebx
    jmp     1b
8:  mov     %r13d, %eax
9:  pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(logical_expected)

/*
 * setup_logical(cluster = %edi) -> %eax: puts every online CPU in the flat
 * (0) or cluster (1) model with its LDR. 0 = done, 1 = an AP did not answer.
 */
FUNCTION(setup_logical)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    mov     %edi, logical_cluster_mode(%rip)
    movl    $1, aps_dirty(%rip)
    mov     $DFR_FLAT, %r12d
    test    %edi, %edi
    jz      1f
    mov     $DFR_CLUSTER, %r12d
1:  xor     %ebx, %ebx
2:  ONLINE_SLOT %ebx, 8f, 3f
    mov     %ebx, %edi
    mov     $APIC_DFR, %esi
    mov     %r12d, %edx
    call    cpu_write
    test    %eax, %eax
    jnz     9f
    mov     %ebx, %edi
    cmpl    $0, logical_cluster_mode(%rip)
    jne     4f
    call    flat_ldr
    jmp     5f
4:  call    cluster_ldr
5:  mov     %eax, %edx
    mov     %ebx, %edi
    mov     $APIC_LDR, %esi
    call    cpu_write
    test    %eax, %eax
    jnz     9f
3:  inc     %ebx
    jmp     2b
8:  xor     %eax, %eax
9:  pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(setup_logical)

/*
 * logical_cases(mdas = %rdi, count = %esi, vector = %edx) -> %eax: sends a
 * fixed logical IPI to each MDA of the list and verifies the receivers.
 * 0 = all right; 1 = mismatch with fail_arg = the MDA, fail_cpu, %r8 = got, %r9 = wanted.
 */
FUNCTION(logical_cases)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    mov     %rdi, %rbx
    mov     %esi, %r12d
    mov     %edx, %r13d
1:  test    %r12d, %r12d
    jz      8f
    call    zero_counts_all
    movzbl  (%rbx), %edi
    mov     %rdi, fail_arg(%rip)
    mov     %r13d, %esi
    or      $ICR_LOGICAL, %esi
    call    ipi_send
    movzbl  (%rbx), %edi
    call    logical_expected
    mov     %eax, %esi
    mov     %r13d, %edi
    call    verify_delivery
    test    %eax, %eax
    jnz     9f
    inc     %rbx
    dec     %r12d
    jmp     1b
8:  xor     %eax, %eax
9:  pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret
END(logical_cases)

/*
 * LOGICAL_CHECK model, ldr_of, dfr, mdas, mdas_end, vector, what: the body
 * of check_logical_flat / check_logical_cluster. Puts every online CPU in
 * the model (setup_logical: 0 flat, 1 cluster), checks the BSP's LDR
 * (ldr_of(bsp_slot)) and DFR read back, then sends a fixed logical IPI with
 * `vector` to each MDA in [mdas, mdas_end) and checks who took it.
 */
.macro LOGICAL_CHECK model:req, ldr_of:req, dfr:req, mdas:req, mdas_end:req, vector:req, what:req
    CHECK_ENTER
    cli
    mov     $\model, %edi
    call    setup_logical
    test    %eax, %eax
    jz      1f
    FAIL_MSG "an AP did not answer a register-write command"
1:  mov     $APIC_LDR, %edi
    call    lapic_read
    mov     %eax, %r12d
    mov     bsp_slot(%rip), %edi
    call    \ldr_of
    EXPECT_EQ %r12d, %eax, "LDR read back"
    mov     $APIC_DFR, %edi
    call    lapic_read
    EXPECT_EQ %eax, $\dfr, "DFR read back"
    sti
    lea     \mdas(%rip), %rdi
    mov     $(\mdas_end - \mdas), %esi
    mov     $\vector, %edx
    call    logical_cases
    test    %eax, %eax
    jz      2f
    DEFINE_STR .Llogical_what\@, "\what"
    FAIL_CMP .Llogical_what\@, %r9, %r8, rel_eq
2:  cli
    CHECK_PASS
.endm

/* check_logical_flat() -> %eax: RESULT_*. */
FUNCTION(check_logical_flat)
    LOGICAL_CHECK 0, flat_ldr, DFR_FLAT, flat_mdas, flat_mdas_end, VEC_FLAT, "deliveries of 0xa2 to flat logical destination"
END(check_logical_flat)

/* check_logical_cluster() -> %eax: RESULT_*. */
FUNCTION(check_logical_cluster)
    LOGICAL_CHECK 1, cluster_ldr, DFR_CLUSTER, cluster_mdas, cluster_mdas_end, VEC_CLUSTER, "deliveries of 0xa3 to cluster logical destination"
END(check_logical_cluster)

/* check_lowest_priority() -> %eax: RESULT_*. */
FUNCTION(check_lowest_priority)
    CHECK_ENTER
    cmpl    $2, cpus_online(%rip)
    jae     1f
    SKIP_MSG "needs at least 2 cpus"
1:  cli
    xor     %edi, %edi
    call    setup_logical
    test    %eax, %eax
    jnz     8f
    xor     %ebx, %ebx                  /* every CPU: TPR 0x40 */
2:  ONLINE_SLOT %ebx, 3f, 4f
    mov     %ebx, %edi
    mov     $APIC_TPR, %esi
    mov     $0x40, %edx
    call    cpu_write
    test    %eax, %eax
    jnz     8f
4:  inc     %ebx
    jmp     2b
3:  sti
    xor     %ebx, %ebx                  /* target slot */
5:  ONLINE_SLOT %ebx, 7f, 6f
    mov     %ebx, %edi
    mov     $APIC_TPR, %esi
    mov     $0x10, %edx
    call    cpu_write
    test    %eax, %eax
    jnz     8f
    call    zero_counts_all
    mov     %rbx, fail_arg(%rip)
    mov     online_mask(%rip), %edi
    mov     $(ICR_LOGICAL | ICR_MODE_LOWEST | VEC_LOWEST), %esi
    call    ipi_send
    mov     $1, %r12d
    mov     %ebx, %ecx
    shl     %cl, %r12d
    EXPECT_DELIVERY VEC_LOWEST, %r12d, "lowest-priority deliveries of 0xb1 to every CPU (TPR 0x10 on the target and 0x40 elsewhere), target slot"
    mov     %ebx, %edi
    mov     $APIC_TPR, %esi
    mov     $0x40, %edx
    call    cpu_write
    test    %eax, %eax
    jnz     8f
6:  inc     %ebx
    jmp     5b
7:  cli
    CHECK_PASS
8:  FAIL_MSG "an AP did not answer a register-write command"
END(check_lowest_priority)

/* check_nmi() -> %eax: RESULT_*. */
FUNCTION(check_nmi)
    CHECK_ENTER
    cli
    mov     bsp_apic_id(%rip), %edi
    mov     $ICR_MODE_NMI, %esi
    call    ipi_send
    EXPECT_EQ %eax, $0, "ICR delivery status after an NMI IPI (1: stayed busy)"
    mov     %gs:PC_SELF, %rdi
    add     $PC_NMI_COUNT, %rdi
    mov     $1, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
    EXPECT_EQ %eax, $1, "NMIs taken with IF=0 after an NMI IPI to the own APIC ID (0: timed out)"
    call    lapic_isr_any
    EXPECT_EQ %eax, $0, "ISR bits after the NMI"
    EXPECT_EQ %gs:PC_LOG_LEN, $0, "maskable interrupts delivered by the NMI IPI"
    xor     %ebx, %ebx
1:  ONLINE_SLOT %ebx, 3f, 2f
    cmp     bsp_slot(%rip), %ebx
    je      2f
    mov     %ebx, fail_cpu(%rip)
    mov     %ebx, %edi
    call    percpu_of
    mov     %rax, %r12
    mov     PC_APIC_ID(%r12), %edi
    mov     $ICR_MODE_NMI, %esi
    call    ipi_send
    lea     PC_NMI_COUNT(%r12), %rdi
    mov     $1, %esi
    mov     $WAIT_TICKS, %edx
    call    wait_u32
    EXPECT_EQ %eax, $1, "NMIs taken after an NMI IPI to its APIC ID (0: timed out)"
2:  inc     %ebx
    jmp     1b
3:  call    settle
    xor     %ebx, %ebx
4:  ONLINE_SLOT %ebx, 6f, 5f
    mov     %ebx, fail_cpu(%rip)
    mov     %ebx, %edi
    call    percpu_of
    EXPECT_EQ PC_NMI_COUNT(%rax), $1, "NMIs taken in all"
5:  inc     %ebx
    jmp     4b
6:  movl    $-1, fail_cpu(%rip)
    CHECK_PASS
END(check_nmi)

    .section .rodata
/* Logical destinations tried (expected receivers computed by logical_expected). */
flat_mdas:
    .byte 0x01, 0x02, 0x04, 0x08, 0x05, 0x0a, 0x0f, 0x80, 0x00, 0xff
flat_mdas_end:
cluster_mdas:
    .byte 0x01, 0x11, 0x02, 0x12, 0x03, 0x13, 0x0f, 0x1f, 0x2f, 0x00, 0xff
cluster_mdas_end:

    .bss
logical_cluster_mode:
    .long 0                             /* 0: flat model set up, 1: cluster */
