#!/usr/bin/env node
// verify-car.mjs CARFILE [EXPECTED_ROOT_CID]
//
// Checks a CARv1 export of shp with the JavaScript IPLD stack, independently of shp's own code:
//   - the header is version 1 with exactly one root (equal to EXPECTED_ROOT_CID when given);
//   - every block: CIDv1, codec raw (0x55) or dag-cbor (0x71), sha2-256 multihash that matches the
//     block's bytes, at most 1 MiB; dag-cbor blocks decode strictly and re-encode to the same bytes;
//   - every CID linked from a dag-cbor block reachable from the root is present in the CAR.
// On success prints one JSON line {"blocks","raw","dag_cbor","bytes","root"} (bytes = sum of block
// payloads) and exits 0. On the first failure prints "verify-car: FAIL: <why>" on stderr and exits 1.
// Usage errors exit 2. Blocks not reachable from the root and repeated blocks are reported on stderr
// as warnings, not failures.

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CarBlockIterator } from '@ipld/car/iterator'
import * as dagCbor from '@ipld/dag-cbor'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { equals } from 'multiformats/bytes'

export const MAX_BLOCK_BYTES = 1024 * 1024

export class VerifyError extends Error {}

function fail (msg) {
  throw new VerifyError(msg)
}

/** Collects every CID found anywhere inside a decoded dag-cbor value (iteratively: no deep recursion). */
function collectLinks (value) {
  const links = []
  const stack = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    if (v === null || typeof v !== 'object') continue
    const cid = CID.asCID(v)
    if (cid) {
      links.push(cid)
    } else if (Array.isArray(v)) {
      for (const x of v) stack.push(x)
    } else if (!(v instanceof Uint8Array)) {
      for (const k of Object.keys(v)) stack.push(v[k])
    }
  }
  return links
}

function checkCid (cid, where) {
  if (cid.version !== 1) fail(`${where}: CID ${cid} is version ${cid.version}, want 1`)
  if (cid.code !== raw.code && cid.code !== dagCbor.code) {
    fail(`${where}: CID ${cid} has codec 0x${cid.code.toString(16)}, want raw (0x55) or dag-cbor (0x71)`)
  }
  if (cid.multihash.code !== sha256.code || cid.multihash.size !== 32) {
    fail(`${where}: CID ${cid} has multihash 0x${cid.multihash.code.toString(16)}/${cid.multihash.size} bytes, want sha2-256 (0x12/32)`)
  }
}

/**
 * Verifies the CAR file at `carPath`. Returns the summary object; throws VerifyError on failure.
 * @param {string} carPath
 * @param {string} [expectedRoot]
 * @param {(msg: string) => void} [warn]
 */
export async function verifyCar (carPath, expectedRoot, warn = () => {}) {
  let expected
  if (expectedRoot !== undefined) {
    try {
      expected = CID.parse(expectedRoot)
    } catch (e) {
      fail(`expected root ${JSON.stringify(expectedRoot)} is not a CID: ${e.message}`)
    }
  }

  let iter
  try {
    iter = await CarBlockIterator.fromIterable(fs.createReadStream(carPath))
  } catch (e) {
    fail(`cannot read CAR header of ${carPath}: ${e.message}`)
  }
  if (iter.version !== 1) fail(`CAR version is ${iter.version}, want 1`)
  const roots = await iter.getRoots()
  if (expected !== undefined) {
    if (roots.length !== 1 || !roots[0].equals(expected)) {
      fail(`roots are [${roots.join(', ')}], want [${expected}]`)
    }
  } else if (roots.length !== 1) {
    fail(`header has ${roots.length} roots [${roots.join(', ')}], want exactly one`)
  }
  const root = roots[0]
  checkCid(root, 'root')

  // cid string -> links (CID[]) for dag-cbor blocks, [] for raw blocks
  const present = new Map()
  const stats = { blocks: 0, raw: 0, dag_cbor: 0, bytes: 0 }
  let duplicates = 0
  try {
    for await (const { cid, bytes } of iter) {
      const where = `block #${stats.blocks} (${cid})`
      checkCid(cid, where)
      if (bytes.length > MAX_BLOCK_BYTES) {
        fail(`${where}: ${bytes.length} bytes, more than the ${MAX_BLOCK_BYTES}-byte limit`)
      }
      const digest = await sha256.digest(bytes)
      if (!equals(digest.bytes, cid.multihash.bytes)) {
        fail(`${where}: sha2-256 of the ${bytes.length} block bytes is ${CID.create(1, cid.code, digest)}, not what the CID says`)
      }
      let links = []
      if (cid.code === dagCbor.code) {
        let node
        try {
          node = dagCbor.decode(bytes)
        } catch (e) {
          fail(`${where}: not strict dag-cbor: ${e.message}`)
        }
        let again
        try {
          again = dagCbor.encode(node)
        } catch (e) {
          fail(`${where}: decoded dag-cbor does not re-encode: ${e.message}`)
        }
        if (!equals(again, bytes)) {
          fail(`${where}: dag-cbor is not canonical: re-encoding gives ${again.length} different bytes (of ${bytes.length})`)
        }
        links = collectLinks(node)
        stats.dag_cbor++
      } else {
        stats.raw++
      }
      stats.blocks++
      stats.bytes += bytes.length
      const key = cid.toString()
      if (present.has(key)) duplicates++
      present.set(key, links)
    }
  } catch (e) {
    if (e instanceof VerifyError) throw e
    fail(`cannot decode CAR body after ${stats.blocks} blocks: ${e.message}`)
  }
  if (stats.blocks === 0) fail('CAR holds no blocks')

  // walk the DAG from the root
  const seen = new Set([root.toString()])
  const queue = [[root, 'the header']]
  while (queue.length > 0) {
    const [cid, from] = queue.pop()
    const links = present.get(cid.toString())
    if (links === undefined) fail(`block ${cid} (linked from ${from}) is missing from the CAR`)
    for (const link of links) {
      const key = link.toString()
      if (!seen.has(key)) {
        seen.add(key)
        queue.push([link, cid.toString()])
      }
    }
  }
  if (duplicates > 0) warn(`${duplicates} block(s) appear more than once`)
  const unreachable = present.size - seen.size
  if (unreachable > 0) warn(`${unreachable} block(s) are not reachable from the root ${root}`)

  return { ...stats, root: root.toString() }
}

async function main (argv) {
  if (argv.length < 1 || argv.length > 2 || argv[0] === '-h' || argv[0] === '--help') {
    process.stderr.write('usage: verify-car.mjs CARFILE [EXPECTED_ROOT_CID]\n')
    return 2
  }
  try {
    const summary = await verifyCar(argv[0], argv[1], (m) => process.stderr.write(`verify-car: warning: ${m}\n`))
    process.stdout.write(JSON.stringify(summary) + '\n')
    return 0
  } catch (e) {
    const msg = e instanceof VerifyError ? e.message : (e && e.stack) || String(e)
    process.stderr.write(`verify-car: FAIL: ${argv[0]}: ${msg}\n`)
    return 1
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2))
}
