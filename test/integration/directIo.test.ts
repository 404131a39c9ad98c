// storage/directIo.ts: page-aligned buffers that O_DIRECT accepts, and the fallback to the page
// cache on a file system that refuses O_DIRECT.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { constants } from 'node:fs'
import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { BLOCK_BYTES, alignUp, alignedBuffer, openDirect } from '../../storage/directIo.ts'

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'quire-directio-'))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

test('an aligned buffer is written O_DIRECT at aligned offsets; alignUp rounds to blocks', () =>
  withDir(async (dir) => {
    assert.equal([alignUp(0), alignUp(1), alignUp(4096), alignUp(4097)], [0, 4096, 4096, 8192])
    assert.throws(() => alignedBuffer(1000), /aligned buffer of 1000 bytes/)
    const buf = alignedBuffer(2 * BLOCK_BYTES)
    assert.ok(buf.every((b) => b === 0), 'zero-filled')
    buf.fill(7, 0, BLOCK_BYTES)
    const file = path.join(dir, 'f')
    const { fh, direct } = await openDirect(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)
    try {
      assert.ok(direct, 'this test folder takes O_DIRECT')
      await fh.write(buf, 0, 2 * BLOCK_BYTES, BLOCK_BYTES)
    } finally {
      await fh.close()
    }
    const bytes = await readFile(file)
    assert.is(bytes.length, 3 * BLOCK_BYTES)
    assert.ok(bytes.subarray(BLOCK_BYTES, 2 * BLOCK_BYTES).every((b) => b === 7))
  }))

test('where O_DIRECT is refused (EINVAL) the file is opened without it, and without O_EXCL on the file the refusal created', () =>
  withDir(async (dir) => {
    const file = path.join(dir, 'g')
    const asked: number[] = []
    // A file system without O_DIRECT, as Linux behaves: the file is created, then EINVAL.
    const noDirect = async (f: string, flags: number): Promise<FileHandle> => {
      asked.push(flags)
      if ((flags & constants.O_DIRECT) !== 0) {
        await (await open(f, flags & ~constants.O_DIRECT)).close()
        throw Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' })
      }
      return open(f, flags)
    }
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL
    const { fh, direct } = await openDirect(file, flags, noDirect)
    await fh.close()
    assert.not.ok(direct)
    assert.equal(asked, [flags | constants.O_DIRECT, flags & ~constants.O_EXCL])
    // Any other error is not a missing O_DIRECT: it is thrown.
    const denied = async (): Promise<FileHandle> => { throw Object.assign(new Error('EACCES'), { code: 'EACCES' }) }
    await openDirect(path.join(dir, 'h'), flags, denied).then(
      () => assert.unreachable('opened'),
      (err: NodeJS.ErrnoException) => assert.is(err.code, 'EACCES'),
    )
  }))

test.run()
