// Minimal types for rocksdb-native 3.x (the package ships none): only what storage/entryStore.ts
// uses. Keys and values are raw bytes (no keyEncoding/valueEncoding); values read back are
// Buffers over memory the binding hands to JS (freed on GC), so they stay valid.

declare module 'rocksdb-native' {
  interface RocksDBOptions {
    columnFamilies?: string[]
    createIfMissing?: boolean
    /** RocksDB's OpenForReadOnly: writes nothing at open (no WAL flush, no MANIFEST), takes no lock. */
    readOnly?: boolean
  }

  interface BatchOptions {
    /** Required in Quire: a batch not destroyed keeps a handle that makes close() hang. */
    autoDestroy: true
    capacity?: number
  }

  interface ReadBatch {
    get(key: Uint8Array): Promise<Buffer | null>
    flush(): Promise<void>
  }

  interface WriteBatch {
    tryPut(key: Uint8Array, value: Uint8Array): void
    tryDelete(key: Uint8Array): void
    tryDeleteRange(start: Uint8Array, end: Uint8Array): void
    flush(): Promise<void>
  }

  interface IteratorRange {
    gt?: Uint8Array
    gte?: Uint8Array
    lt?: Uint8Array
    lte?: Uint8Array
  }

  interface IteratorOptions {
    reverse?: boolean
    values?: boolean
    limit?: number
  }

  interface IteratorItem {
    key: Buffer
    /** null when the iterator was opened with `values: false`. */
    value: Buffer | null
  }

  class RocksDB {
    constructor(path: string, options?: RocksDBOptions)
    readonly opened: boolean
    readonly closed: boolean
    ready(): Promise<void>
    /** A session on the named column family (declared in `columnFamilies` at open). */
    columnFamily(name: string): RocksDB
    read(options: BatchOptions): ReadBatch
    write(options: BatchOptions): WriteBatch
    iterator(range: IteratorRange, options?: IteratorOptions): AsyncIterable<IteratorItem>
    /** Flush this session's column family memtable to an SST file. */
    flush(): Promise<void>
    compactRange(start?: Uint8Array | null, end?: Uint8Array | null): Promise<void>
    close(): Promise<void>
  }

  export = RocksDB
}
