/*
 * hello.S: the `hello` guest. Prints one line on the serial port and exits 0.
 */
#include "common.h"

    .text
    .code64

/* guest_main(boot_info = %rdi): returns the exit status. */
FUNCTION(guest_main)
    push    %rbp
    mov     %rsp, %rbp
    call    say_hello
    mov     $EXIT_OK, %eax
    pop     %rbp
    ret
END(guest_main)

/* say_hello(): prints the greeting line. */
FUNCTION(say_hello)
    push    %rbp
    mov     %rsp, %rbp
    lea     msg_hello(%rip), %rdi
    call    serial_puts
    pop     %rbp
    ret
END(say_hello)

    .section .rodata
msg_hello:
    .asciz "hello from hvtrace guest\n"
