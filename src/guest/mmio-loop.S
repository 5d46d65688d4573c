/*
 * The exit benchmark's guest: 64-bit CPL3, writes a counter to the MMIO
 * address in %rsi for ever, so every iteration is one KVM_EXIT_MMIO.
 */
    .code64
    .text
    .globl _start
_start:
1:  mov     %rax, (%rsi)
    inc     %rax
    jmp     1b
