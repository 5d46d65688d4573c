/** sys/: checked libc wrappers, owned descriptors and mappings, the host probe. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CapabilityError, InvalidArgumentError, ResourceClosedError, SystemCallError } from '../../src/core/errors.js';
import { Kvm } from '../../src/sys/kvm.js';
import {
  FALLOC_FL_KEEP_SIZE,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MFD_CLOEXEC,
  PROT_READ,
  PROT_WRITE,
  fallocate,
  fstat,
  ftruncate,
  memfdCreate,
  open,
  O_RDONLY,
} from '../../src/sys/libc.js';
import { Mapping } from '../../src/sys/mapping.js';
import { OwnedFd } from '../../src/sys/owned-fd.js';
import { probeHost } from '../../src/sys/probe.js';
import { openKvm } from '../support/host.js';
import { thrown } from '../support/thrown.js';

describe('libc wrappers', () => {
  it('throw a SystemCallError with the call, errno name and range', () => {
    const err = thrown(SystemCallError, () => {
      fallocate(987_654, FALLOC_FL_KEEP_SIZE, 0x2000, 0x1000, { target: 'nothing' });
    });
    assert.equal(err.code, 'ERR_SYSCALL');
    assert.equal(err.call, 'fallocate');
    assert.equal(err.errnoName, 'EBADF');
    assert.equal(err.errno, 9);
    assert.deepEqual(err.range, { offset: '0x2000', size: '0x1000' });
    assert.match(err.message, /^fallocate on nothing failed for offset 0x2000 size 0x1000: EBADF \(bad file descriptor\)$/);
    const missing = thrown(SystemCallError, () => open('/nonexistent/guestmem', O_RDONLY));
    assert.equal(missing.errnoName, 'ENOENT');
  });

  it('refuse impossible arguments before the call, with a typed error', () => {
    for (const [offset, length] of [[-1, 4096], [0, 0], [0, -4096], [0.5, 4096], [Number.MAX_SAFE_INTEGER, 4096], [Number.NaN, 1]]) {
      assert.throws(() => {
        fallocate(0, FALLOC_FL_KEEP_SIZE, offset ?? 0, length ?? 0);
      }, InvalidArgumentError, `${String(offset)}+${String(length)}`);
    }
    assert.throws(() => Mapping.map(0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 'empty'), InvalidArgumentError);
    assert.throws(() => {
      ftruncate(0, -1);
    }, InvalidArgumentError);
  });

  it('give file sizes and allocated blocks through fstat', () => {
    using fd = new OwnedFd(memfdCreate('stat', MFD_CLOEXEC), 'memfd stat');
    ftruncate(fd.fd, 1 << 20);
    fallocate(fd.fd, FALLOC_FL_KEEP_SIZE, 0, 8192);
    const st = fstat(fd.fd);
    assert.equal(st.size, 1 << 20);
    assert.equal(st.blocks * 512, 8192);
  });
});

describe('owned descriptors and mappings', () => {
  it('close once, and refuse use after close', () => {
    const fd = new OwnedFd(memfdCreate('owned', MFD_CLOEXEC), 'memfd owned');
    assert.match(fd.toString(), /^memfd owned \(fd \d+\)$/);
    fd.close();
    fd.close();
    assert.equal(fd.closed, true);
    assert.throws(() => fd.fd, ResourceClosedError);
    const map = Mapping.map(8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 'scratch');
    map.bytes[4096] = 7;
    assert.equal(map.dataView.getUint8(4096), 7);
    assert.equal(map.residency()[1], 1, 'the touched page is resident');
    map.close();
    map.close();
    assert.throws(() => map.bytes, ResourceClosedError);
  });
});

describe('KVM', () => {
  it('reports a missing /dev/kvm as a capability error', () => {
    assert.throws(() => Kvm.open('/nonexistent/kvm'), (e: unknown) => e instanceof CapabilityError && e.message.includes('no KVM'));
  });

  it('probes the host once: API version, capabilities, huge pages, THP, cgroups', (t) => {
    const kvm = openKvm(t);
    if (!kvm) return;
    kvm.close();
    const probe = probeHost();
    assert.equal(probeHost(), probe, 'probed once');
    assert.ok(probe.kvm.available);
    assert.equal(probe.kvm.apiVersion, 12);
    assert.ok(probe.kvm.caps.nrMemslots > 0);
    assert.ok(probe.kvm.vmTypes.includes('default'));
    assert.equal(probe.hostPageSize, 4096);
    assert.ok(probe.hugePages.every((p) => p.size >= 2 ** 21 && p.free <= p.total));
    assert.ok(['v1', 'v2', 'none'].includes(probe.memoryCgroup));
  });

  it('checks ioctl arguments before the call', (t) => {
    const kvm = openKvm(t);
    if (!kvm) return;
    using vm = kvm.createVm();
    assert.throws(() => vm.createGuestMemfd(-4096, 0), InvalidArgumentError);
    assert.throws(() => {
      vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 1n << 64n, memorySize: 4096, userspaceAddr: 0 });
    }, InvalidArgumentError);
    assert.throws(() => {
      vm.setMemoryAttributes(-1, 4096, 8);
    }, InvalidArgumentError);
    assert.throws(() => {
      vm.enableCap(201, [1, 2, 3, 4, 5]);
    }, InvalidArgumentError);
    const gmem = thrown(SystemCallError, () => vm.createGuestMemfd(4097, 0));
    assert.equal(gmem.request, 'KVM_CREATE_GUEST_MEMFD');
    assert.equal(gmem.errnoName, 'EINVAL', 'what the kernel itself checks comes back with its errno');
    kvm.close();
  });

  it('refuses a child fd made other than by its parent', (t) => {
    const kvm = openKvm(t);
    if (!kvm) return;
    using vm = kvm.createVm();
    const Ctor = vm.constructor as new (...args: unknown[]) => unknown;
    assert.throws(() => new Ctor(Symbol('kvm child'), kvm, vm.fd, 0), /use Kvm.createVm/);
    kvm.close();
  });
});
