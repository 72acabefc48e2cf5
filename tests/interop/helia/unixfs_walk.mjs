// Reads a CARv1 and walks a UnixFS tree in it with js-ipfs-unixfs's exporter (what Helia's
// @helia/unixfs reads with), so shp's UnixFS views are checked by another implementation.
//
//   node unixfs_walk.mjs CAR ROOT            every entry under ROOT, one JSON object per line
//   node unixfs_walk.mjs CAR ROOT/PATH ...   just the entries those paths name (the exporter
//                                            resolves them, through HAMT shards too)
//   node unixfs_walk.mjs --ls CAR ROOT[/PATH] the names in that directory, one per line (only
//                                            the directory's own blocks need be in the CAR)
//
// Each line: {"path", "cid", "type": "dir"|"file"|"symlink", "mode", "mtime": [secs, nsecs], "size",
// "sha256" (files), "target" (symlinks), "shards": true for a HAMT-sharded directory}.
// Every block of the CAR is checked against its CID (sha2-256) before anything is read.
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { exporter } from 'ipfs-unixfs-exporter'

function uvarint (buf, pos) {
  let v = 0; let shift = 0
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint')
    const b = buf[pos++]
    v += (b & 0x7f) * 2 ** shift
    if ((b & 0x80) === 0) return [v, pos]
    shift += 7
    if (shift > 49) throw new Error('varint too long')
  }
}

const args = process.argv.slice(2)
const ls = args[0] === '--ls'
if (ls) args.shift()
const [carPath, ...paths] = args
if (carPath == null || paths.length === 0) {
  console.error('usage: unixfs_walk.mjs CAR ROOT[/PATH] ...')
  process.exit(2)
}
const car = readFileSync(carPath)
const blocks = new Map()
let [hlen, pos] = uvarint(car, 0)
pos += hlen
while (pos < car.length) {
  let len
  [len, pos] = uvarint(car, pos)
  const end = pos + len
  const section = car.subarray(pos, end)
  // CIDv1: version, codec, multihash (0x12 0x20 + 32 bytes) — all the CIDs shp writes.
  const cid = CID.decode(section.subarray(0, 36))
  const bytes = section.subarray(36)
  const digest = createHash('sha256').update(bytes).digest()
  if (cid.multihash.code !== 0x12 || Buffer.compare(Buffer.from(cid.multihash.digest), digest) !== 0) {
    throw new Error(`block ${cid} does not hash to its CID`)
  }
  blocks.set(cid.toString(), bytes)
  pos = end
}
const blockstore = {
  async * get (cid) {
    const b = blocks.get(cid.toString())
    if (b == null) throw new Error(`block ${cid} is not in the CAR`)
    yield b
  },
  async has (cid) { return blocks.has(cid.toString()) }
}

async function describe (entry, path) {
  const u = entry.unixfs
  const out = { path, cid: entry.cid.toString() }
  if (entry.type === 'directory') {
    out.type = 'dir'
    if (u.type === 'hamt-sharded-directory') out.shards = true
  } else if (entry.type === 'file' && u.type === 'symlink') {
    out.type = 'symlink'
    out.target = Buffer.from(u.data).toString('utf8')
  } else if (entry.type === 'file') {
    out.type = 'file'
    const h = createHash('sha256')
    let size = 0
    for await (const chunk of entry.content()) {
      h.update(chunk)
      size += chunk.length
    }
    out.size = size
    if (BigInt(size) !== u.fileSize()) throw new Error(`${path}: read ${size} bytes, the node says ${u.fileSize()}`)
    out.sha256 = h.digest('hex')
  } else {
    throw new Error(`${path}: unexpected entry type ${entry.type}`)
  }
  out.mode = u.mode
  out.mtime = u.mtime == null ? null : [Number(u.mtime.secs), u.mtime.nsecs ?? 0]
  return out
}

async function walk (entry, path) {
  const d = await describe(entry, path)
  console.log(JSON.stringify(d))
  if (entry.type === 'directory') {
    for await (const child of entry.entries()) {
      const full = await exporter(child.cid, blockstore)
      await walk(full, path === '' ? child.name : `${path}/${child.name}`)
    }
  }
}

for (const p of paths) {
  const entry = await exporter(p, blockstore)
  if (ls) {
    if (entry.type !== 'directory') throw new Error(`${p} is not a directory`)
    for await (const child of entry.entries()) console.log(child.name)
  } else if (!p.includes('/')) {
    await walk(entry, '')
  } else {
    console.log(JSON.stringify(await describe(entry, p.slice(p.indexOf('/') + 1))))
  }
}
