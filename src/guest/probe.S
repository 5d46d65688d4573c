/*
 * The probe guest: 64-bit, CPL3. Executes commands the host feeds it through
 * an MMIO doorbell at %rsi (guest physical, unbacked, so every access exits):
 *
 *   [rsi+0x00] read   opcode       [rsi+0x08] read  arg0
 *   [rsi+0x10] read   arg1         [rsi+0x18] read  arg2
 *   [rsi+0x20] write  result
 *
 *   1 READ64   result = *(u64 *)arg0
 *   2 WRITE64  *(u64 *)arg0 = arg1; result = arg1
 *   3 SUM64    result = sum of the u64s in [arg0, arg0 + arg1)
 *   4 FILL64   the u64s in [arg0, arg0 + arg1) = arg2; result = count
 *   5 SPIN     loop for ever (until the host kicks the vCPU)
 *   6 OUTB     outb(port arg0, value arg1); result = 0 (needs IOPL 3)
 *   other      result = 0
 */
    .include "memory-ops.inc"
    .code64
    .text
    .globl _start
_start:
next:
    mov     (%rsi), %rax
    cmp     $1, %rax
    je      op_read
    cmp     $2, %rax
    je      op_write
    cmp     $3, %rax
    je      op_sum
    cmp     $4, %rax
    je      op_fill
    cmp     $5, %rax
    je      op_spin
    cmp     $6, %rax
    je      op_out
    xor     %eax, %eax
    mov     %rax, 0x20(%rsi)
    jmp     next

op_read:
    mov     0x08(%rsi), %rbx
    mov     (%rbx), %rax
    mov     %rax, 0x20(%rsi)
    jmp     next

op_write:
    mov     0x08(%rsi), %rbx
    mov     0x10(%rsi), %rcx
    mov     %rcx, (%rbx)
    mov     %rcx, 0x20(%rsi)
    jmp     next

op_sum:
    mov     0x08(%rsi), %rbx
    mov     0x10(%rsi), %rcx
    SUM64
    mov     %rax, 0x20(%rsi)
    jmp     next

op_fill:
    mov     0x08(%rsi), %rdi
    mov     0x10(%rsi), %rcx
    mov     0x18(%rsi), %rax
    FILL64  %rdx
    mov     %rdx, 0x20(%rsi)
    jmp     next

op_spin:
    jmp     op_spin

op_out:
    mov     0x08(%rsi), %rdx
    mov     0x10(%rsi), %rax
    out     %al, %dx
    xor     %eax, %eax
    mov     %rax, 0x20(%rsi)
    jmp     next
