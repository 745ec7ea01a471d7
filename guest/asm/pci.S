/*
 * pci.S: the `pci` guest. Probes PCI configuration mechanism #1 as Linux's
 * pci_check_type1 and a bus scan do: CONFIG_ADDRESS (0xCF8) holds a dword
 * written to it; bus 0 device 0 function 0 answers with its vendor/device
 * ID (read as a dword, a word and a byte from CONFIG_DATA 0xCFC-0xCFF) and a
 * host-bridge class code (06/00/00); device 1 and, with the enable bit
 * clear, everything read all ones. Prints one line per check.
 * Exit statuses: 0 all as above, else the number of the first check that
 * failed (1 address register, 2 dword ID, 3 word ID, 4 byte ID, 5 class,
 * 6 empty slot, 7 enable bit clear).
 */
#include "common.h"

#define CONFIG_ADDRESS      0xcf8
#define CONFIG_DATA         0xcfc
#define ENABLE              0x80000000
#define DEV(d)              ((d) << 11)

    .text
    .code64

/* guest_main(boot_info = %rdi): returns the exit status. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    push    %rbx
    sub     $8, %rsp
    mov     $1, %ebx                    /* check number */
    mov     $ENABLE, %edi               /* 1: the address register reads back */
    call    pci_address
    mov     $CONFIG_ADDRESS, %dx
    in      %dx, %eax
    cmp     $ENABLE, %eax
    jne     9f
    inc     %ebx                        /* 2: vendor and device ID as a dword */
    mov     $CONFIG_DATA, %dx
    in      %dx, %eax
    cmp     $0x0d578086, %eax
    jne     9f
    inc     %ebx                        /* 3: the device ID as a word at 0xCFE */
    mov     $(CONFIG_DATA + 2), %dx
    xor     %eax, %eax
    in      %dx, %ax
    cmp     $0x0d57, %eax
    jne     9f
    inc     %ebx                        /* 4: the vendor ID's high byte at 0xCFD */
    mov     $(CONFIG_DATA + 1), %dx
    xor     %eax, %eax
    in      %dx, %al
    cmp     $0x80, %eax
    jne     9f
    PUTS    msg_id
    inc     %ebx                        /* 5: class code 06/00/00 in dword 2 */
    mov     $(ENABLE | 0x08), %edi
    call    pci_address
    mov     $CONFIG_DATA, %dx
    in      %dx, %eax
    shr     $8, %eax
    cmp     $0x060000, %eax
    jne     9f
    PUTS    msg_class
    inc     %ebx                        /* 6: device 1 is empty */
    mov     $(ENABLE | DEV(1)), %edi
    call    pci_address
    mov     $CONFIG_DATA, %dx
    in      %dx, %eax
    cmp     $0xffffffff, %eax
    jne     9f
    inc     %ebx                        /* 7: enable bit clear */
    xor     %edi, %edi
    call    pci_address
    mov     $CONFIG_DATA, %dx
    in      %dx, %eax
    cmp     $0xffffffff, %eax
    jne     9f
    PUTS    msg_empty
    mov     $EXIT_OK, %eax
    jmp     8f
9:  PUTS    msg_failed
    mov     %ebx, %edi
    call    print_dec
    PUTS    msg_newline
    mov     %ebx, %eax
8:  add     $8, %rsp
    pop     %rbx
    pop     %rbp
    ret
END(guest_main)

/* pci_address(value = %edi): writes CONFIG_ADDRESS as a dword. */
FUNCTION(pci_address)
    mov     %edi, %eax
    mov     $CONFIG_ADDRESS, %dx
    out     %eax, %dx
    ret
END(pci_address)

    .section .rodata
msg_id:      .asciz "pci: 00:00.0 is 8086:0d57 (dword, word and byte reads agree)\n"
msg_class:   .asciz "pci: 00:00.0 class 06/00/00 (host bridge)\n"
msg_empty:   .asciz "pci: 00:01.0 and disabled accesses read all ones\n"
msg_failed:  .asciz "pci: check failed: "
msg_newline: .asciz "\n"
