#!/usr/bin/env node
// Self-test of verify-car.mjs: builds CARs with @ipld/car's CarWriter (a good one, and bad copies that
// each break one rule) and runs the verify-car CLI on each. Run: node --test selftest.mjs
// (or plain `node selftest.mjs`); exits non-zero if verify-car rejects the good CAR or accepts a bad one.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CarWriter } from '@ipld/car/writer'
import * as dagCbor from '@ipld/dag-cbor'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { sha256, sha512 } from 'multiformats/hashes/sha2'

const here = path.dirname(fileURLToPath(import.meta.url))
const verifyCar = path.join(here, 'verify-car.mjs')
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shp-verify-car-'))
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }))

async function block (codec, bytes, hasher = sha256, version = 1) {
  const cid = CID.create(version, codec, await hasher.digest(bytes))
  return { cid, bytes }
}
const rawBlock = (bytes) => block(raw.code, bytes)
const cborBlock = (value) => block(dagCbor.code, dagCbor.encode(value))

/** Deterministic pseudo-random bytes (xorshift32). */
function prng (n, seed) {
  const out = new Uint8Array(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

async function writeCar (name, roots, blocks) {
  const { writer, out } = CarWriter.create(roots)
  const chunks = []
  const collected = (async () => { for await (const c of out) chunks.push(c) })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await collected
  const file = path.join(tmp, name)
  fs.writeFileSync(file, Buffer.concat(chunks))
  return file
}

function run (...args) {
  const r = spawnSync(process.execPath, [verifyCar, ...args], { encoding: 'utf8' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

function assertFails (r, pattern) {
  assert.equal(r.code, 1, `verify-car should exit 1, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
  assert.equal(r.stdout, '', 'nothing on stdout on failure')
  assert.match(r.stderr, pattern)
}

// a small image-like DAG: raw chunks, a file node, a layer node, a root
const chunkA = await rawBlock(new TextEncoder().encode('root:x:0:0:root:/root:/bin/sh\n'))
const chunkB = await rawBlock(prng(256 * 1024, 42))
const chunkC = await rawBlock(prng(100 * 1024, 7))
const empty = await rawBlock(new Uint8Array(0))
const file = await cborBlock({ size: 356 * 1024, chunks: [chunkB.cid, chunkC.cid] })
const layer = await cborBlock({
  entries: [
    { header: new Uint8Array(512), data: chunkA.cid },
    { header: new Uint8Array(512), data: file.cid },
    { header: new Uint8Array(512), data: empty.cid },
    { header: new Uint8Array(512), data: chunkB.cid } // same chunk again: deduplicated
  ],
  trailer: new Uint8Array(1024)
})
const root = await cborBlock({ version: 1, kind: 'image', layers: [layer.cid], note: null, n: -3, f: 1.5 })
const good = [root, layer, file, chunkA, chunkB, chunkC, empty]
const goodTotal = good.reduce((n, b) => n + b.bytes.length, 0)

test('accepts a good CAR, with and without the expected root', async () => {
  const car = await writeCar('good.car', [root.cid], good)
  for (const args of [[car], [car, root.cid.toString()]]) {
    const r = run(...args)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '')
    const summary = JSON.parse(r.stdout)
    assert.deepEqual(summary, { blocks: 7, raw: 4, dag_cbor: 3, bytes: goodTotal, root: root.cid.toString() })
  }
})

test('warns about, but accepts, unreachable and repeated blocks', async () => {
  const stray = await rawBlock(new TextEncoder().encode('stray'))
  const car = await writeCar('extra.car', [root.cid], [...good, stray, chunkA])
  const r = run(car)
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stderr, /1 block\(s\) are not reachable/)
  assert.match(r.stderr, /1 block\(s\) appear more than once/)
  assert.equal(JSON.parse(r.stdout).blocks, 9)
})

test('catches a corrupted byte in a raw block', async () => {
  const car = await writeCar('corrupt.car', [root.cid], good)
  const bytes = fs.readFileSync(car)
  const at = Buffer.from(bytes).indexOf(Buffer.from(chunkC.bytes.subarray(0, 64)))
  assert.ok(at > 0)
  bytes[at + 5000] ^= 0x01
  fs.writeFileSync(car, bytes)
  assertFails(run(car), /sha2-256 of the 102400 block bytes is .* not what the CID says/)
})

test('catches a corrupted byte in a dag-cbor block', async () => {
  const car = await writeCar('corrupt-cbor.car', [root.cid], good)
  const bytes = fs.readFileSync(car)
  const at = Buffer.from(bytes).indexOf(Buffer.from(root.bytes))
  assert.ok(at > 0)
  bytes[at + root.bytes.length - 1] ^= 0x01
  fs.writeFileSync(car, bytes)
  assertFails(run(car), /not what the CID says/)
})

test('catches a missing linked block', async () => {
  const car = await writeCar('missing.car', [root.cid], good.filter((b) => b !== chunkC))
  assertFails(run(car), new RegExp(`block ${chunkC.cid} \\(linked from ${file.cid}\\) is missing`))
})

test('catches a missing root block', async () => {
  const car = await writeCar('noroot.car', [root.cid], good.slice(1))
  assertFails(run(car), new RegExp(`block ${root.cid} \\(linked from the header\\) is missing`))
})

test('catches a root other than the expected one', async () => {
  const car = await writeCar('good2.car', [root.cid], good)
  assertFails(run(car, layer.cid.toString()), /roots are \[.*\], want \[/)
  assertFails(run(car, 'not-a-cid'), /is not a CID/)
})

test('catches a header with two roots', async () => {
  const car = await writeCar('tworoots.car', [root.cid, layer.cid], good)
  assertFails(run(car), /2 roots/)
})

test('catches non-canonical dag-cbor (map keys out of order)', async () => {
  // {"b": 1, "a": 2}: valid CBOR, but dag-cbor sorts keys, so it re-encodes differently
  const bad = await block(dagCbor.code, Uint8Array.from([0xa2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02]))
  const car = await writeCar('noncanon.car', [bad.cid], [bad])
  assertFails(run(car), /not canonical/)
})

test('catches non-minimal integers and undefined in dag-cbor', async () => {
  const nonMinimal = await block(dagCbor.code, Uint8Array.from([0x18, 0x01])) // 1 as uint8
  assertFails(run(await writeCar('nonminimal.car', [nonMinimal.cid], [nonMinimal])), /not strict dag-cbor/)
  const undef = await block(dagCbor.code, Uint8Array.from([0xf7])) // undefined: decodes to null
  assertFails(run(await writeCar('undef.car', [undef.cid], [undef])), /not canonical/)
})

test('catches bytes that are not CBOR at all in a dag-cbor block', async () => {
  const bad = await block(dagCbor.code, new TextEncoder().encode('{"json":true}'))
  assertFails(run(await writeCar('json.car', [bad.cid], [bad])), /not strict dag-cbor/)
})

test('catches a block over 1 MiB, and accepts one of exactly 1 MiB', async () => {
  const max = await rawBlock(prng(1024 * 1024, 1))
  const r = run(await writeCar('max.car', [max.cid], [max]))
  assert.equal(r.code, 0, r.stderr)
  const big = await rawBlock(prng(1024 * 1024 + 1, 1))
  assertFails(run(await writeCar('big.car', [big.cid], [big])), /1048577 bytes, more than the 1048576-byte limit/)
})

test('catches a codec other than raw and dag-cbor', async () => {
  const pb = await block(0x70, new Uint8Array([0x0a, 0x00]))
  assertFails(run(await writeCar('dagpb.car', [pb.cid], [pb])), /codec 0x70/)
})

test('catches a CIDv0 block', async () => {
  const v0 = await block(0x70, new Uint8Array([0x0a, 0x00]), sha256, 0)
  const car = await writeCar('v0.car', [root.cid], [...good, v0])
  assertFails(run(car), /is version 0, want 1/)
})

test('catches a sha2-512 block', async () => {
  const b512 = await block(raw.code, new TextEncoder().encode('x'), sha512)
  assertFails(run(await writeCar('sha512.car', [b512.cid], [b512])), /multihash 0x13\/64/)
})

test('catches a truncated CAR', async () => {
  const car = await writeCar('trunc.car', [root.cid], good)
  const bytes = fs.readFileSync(car)
  fs.writeFileSync(car, bytes.subarray(0, bytes.length - 1000))
  assertFails(run(car), /cannot decode CAR body/)
})

test('catches a file that is not a CAR, and a missing file', async () => {
  const notCar = path.join(tmp, 'not.car')
  fs.writeFileSync(notCar, 'hello, world\n')
  assertFails(run(notCar), /cannot read CAR header/)
  assertFails(run(path.join(tmp, 'nope.car')), /cannot read CAR header.*ENOENT/)
})

test('usage errors exit 2', () => {
  assert.equal(run().code, 2)
})
