#!/usr/bin/env node
// A real Helia (npm `helia` 7, js-libp2p 3) peer for shp's interop tests, driven line by line.
//
//     node helia_peer.mjs [--swarm-key FILE] [--max-seconds N]
//
// starts a Helia node on loopback only (TCP on 127.0.0.1, noise, yamux, identify, bitswap; no
// bootstrap, no mDNS, no DHT, no delegated HTTP routing, so nothing leaves the machine; with
// --swarm-key, every connection goes through js-libp2p's pnet protector), prints one JSON line
// {"id", "addrs"}, then answers commands read from stdin, one JSON line each:
//
//     connect MULTIADDR | pin CID | add FILE | cat CID[/PATH] | peers | quit
//
// `pin` walks the whole DAG over bitswap (dag-cbor, dag-pb and raw codecs), as Helia's pins.add
// does; `add` imports a file with @helia/unixfs's defaults (CIDv1, raw leaves, 1 MiB chunks) and
// answers its root CID; `cat` answers the sha256 and size of a UnixFS file read from the network.
// Every command has a deadline of its own, and the process exits by itself when stdin closes or
// after --max-seconds, so a failed test never leaves it behind.

// Node 20 lacks Promise.withResolvers, which js-libp2p 3 uses.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createHeliaLight } = await import('helia')
const { withLibp2pLight } = await import('@helia/libp2p')
const { withBitswap } = await import('@helia/bitswap')
const { unixfs } = await import('@helia/unixfs')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { preSharedKey } = await import('@libp2p/pnet')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const dagCbor = await import('@ipld/dag-cbor')
const { createHash } = await import('node:crypto')
const fs = await import('node:fs')
const readline = await import('node:readline')

const args = process.argv.slice(2)
function opt (name, dflt) {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : dflt
}
const swarmKey = opt('--swarm-key', null)
const maxSeconds = Number(opt('--max-seconds', '240'))
const DEADLINE_MS = 90_000

setTimeout(() => {
  process.stderr.write(`helia_peer: --max-seconds ${maxSeconds} reached, exiting\n`)
  process.exit(3)
}, maxSeconds * 1000).unref()

const libp2p = {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [],
  services: { identify: identify() },
  connectionGater: {
    // Loopback only, whatever a peer advertises.
    denyDialMultiaddr: (ma) => !ma.toString().startsWith('/ip4/127.')
  }
}
if (swarmKey != null) {
  libp2p.connectionProtector = preSharedKey({ psk: fs.readFileSync(swarmKey) })
}

const helia = withBitswap(withLibp2pLight(createHeliaLight({ codecs: [dagCbor] }), libp2p))
await helia.start()
const ufs = unixfs(helia)

function say (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

say({
  id: helia.libp2p.peerId.toString(),
  addrs: helia.libp2p.getMultiaddrs().map((a) => a.decapsulateCode(421).toString())
})

async function run (line) {
  const [cmd, ...rest] = line.trim().split(/\s+/)
  const arg = rest.join(' ')
  const signal = AbortSignal.timeout(DEADLINE_MS)
  switch (cmd) {
    case 'connect': {
      const conn = await helia.libp2p.dial(multiaddr(arg), { signal })
      return { ok: true, peer: conn.remotePeer.toString() }
    }
    case 'pin': {
      let blocks = 0
      for await (const _ of helia.pins.add(CID.parse(arg), { signal })) blocks++ // eslint-disable-line no-unused-vars
      // Every block of the DAG is now in Helia's blockstore: count them from there.
      return { ok: true, blocks }
    }
    case 'add': {
      const cid = await ufs.addBytes(fs.readFileSync(arg), { signal })
      return { ok: true, cid: cid.toString() }
    }
    case 'cat': {
      const h = createHash('sha256')
      let size = 0
      // CID or CID/PATH (a file inside a UnixFS directory, e.g. a layer's view)
      const slash = arg.indexOf('/')
      const root = slash < 0 ? arg : arg.slice(0, slash)
      const path = slash < 0 ? undefined : arg.slice(slash + 1)
      for await (const buf of ufs.cat(CID.parse(root), { signal, path })) {
        h.update(buf)
        size += buf.length
      }
      return { ok: true, sha256: h.digest('hex'), size }
    }
    case 'peers':
      return { ok: true, peers: helia.libp2p.getPeers().map((p) => p.toString()) }
    case 'quit':
      return null
    default:
      return { ok: false, error: `unknown command ${cmd}` }
  }
}

const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  if (line.trim() === '') continue
  let out
  try {
    out = await run(line)
  } catch (e) {
    out = { ok: false, error: String(e?.message ?? e) }
  }
  if (out == null) break
  say(out)
}
await helia.stop().catch(() => {})
process.exit(0)
