/*
 * A real-mode guest (emulated under PVM): port I/O, then HLT.
 *   outb 0x42 to port 0x80; inb from port 0x81; outb that value to port 0x82; hlt.
 */
    .code16
    .text
    .globl _start
_start:
    mov     $0x42, %al
    out     %al, $0x80
    in      $0x81, %al
    out     %al, $0x82
    hlt
