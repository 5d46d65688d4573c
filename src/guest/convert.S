/*
 * The converting guest: 64-bit, CPL3. Runs a script from its memory, the
 * way a confidential guest's kernel converts and uses memory, asking for
 * conversions through the conversion doorbell (MAP_GPA_RANGE's arguments
 * over MMIO), and stores one result per step.
 *
 *   %rsi  the doorbell (GPA 0x00, NPAGES 0x08, ATTRIBUTES 0x10, COMMAND 0x18, STATUS 0x20)
 *   %rdi  the script: steps of four u64 {op, a, b, c}; results at %rdi + 0x8000, one u64 per step
 *   %rdx  where to write when the script is done (an MMIO address)
 *
 *   0 DONE     write 1 to (%rdx), then stop there
 *   1 CONVERT  MAP_GPA_RANGE(gpa a, npages b, attributes c); result = STATUS
 *   2 WRITE64  *(u64 *)a = b; result = b     (a may be MMIO: an 8-byte write)
 *   3 READ64   result = *(u64 *)a
 *   4 FILL64   the u64s of [a, a + b) = c; result = b / 8
 *   5 SUM64    result = sum of the u64s of [a, a + b)
 *   6 WRITE32  *(u32 *)a = b; result = 0     (odd-width accesses, for the doorbell's checks)
 *   7 WRITE8   *(u8 *)a = b; result = 0
 *   other      result = -1
 */
    .include "memory-ops.inc"
    .code64
    .text
    .globl _start
_start:
    mov     %rdi, %r9
    lea     0x8000(%rdi), %r10
    mov     %rdx, %r12
next:
    mov     (%r9), %rax
    test    %rax, %rax
    jz      op_done
    cmp     $1, %rax
    je      op_convert
    cmp     $2, %rax
    je      op_write
    cmp     $3, %rax
    je      op_read
    cmp     $4, %rax
    je      op_fill
    cmp     $5, %rax
    je      op_sum
    cmp     $6, %rax
    je      op_write32
    cmp     $7, %rax
    je      op_write8
    movq    $-1, (%r10)
    jmp     advance

op_convert:
    mov     0x08(%r9), %rax
    mov     %rax, 0x00(%rsi)
    mov     0x10(%r9), %rax
    mov     %rax, 0x08(%rsi)
    mov     0x18(%r9), %rax
    mov     %rax, 0x10(%rsi)
    mov     $1, %eax
    mov     %rax, 0x18(%rsi)
    mov     0x20(%rsi), %rax
    mov     %rax, (%r10)
    jmp     advance

op_write:
    mov     0x08(%r9), %rbx
    mov     0x10(%r9), %rax
    mov     %rax, (%rbx)
    mov     %rax, (%r10)
    jmp     advance

op_read:
    mov     0x08(%r9), %rbx
    mov     (%rbx), %rax
    mov     %rax, (%r10)
    jmp     advance

op_fill:
    mov     0x08(%r9), %rdi
    mov     0x10(%r9), %rcx
    mov     0x18(%r9), %rax
    FILL64  %r11
    mov     %r11, (%r10)
    jmp     advance

op_sum:
    mov     0x08(%r9), %rbx
    mov     0x10(%r9), %rcx
    SUM64
    mov     %rax, (%r10)
    jmp     advance

op_write32:
    mov     0x08(%r9), %rbx
    mov     0x10(%r9), %rax
    mov     %eax, (%rbx)
    movq    $0, (%r10)
    jmp     advance

op_write8:
    mov     0x08(%r9), %rbx
    mov     0x10(%r9), %rax
    mov     %al, (%rbx)
    movq    $0, (%r10)
    jmp     advance

advance:
    add     $32, %r9
    add     $8, %r10
    jmp     next

op_done:
    movq    $1, (%r12)
    jmp     op_done
