// fsync of a folder: a file created, renamed or removed in it stays so after a crash. One helper
// for the journal, the entry logs and the bookie's cookie and limbo files.
import { open } from 'node:fs/promises'

export async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r')
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}
