// MegaDrive format version 1 in the browser: the same bytes as megadrive/crypto.py and
// megadrive/format.py (docs/FORMAT.md is the contract; tests/web/test_format_js.py runs the
// known-answer vectors of its section 12 through this module under node).
//
// Every primitive is libsodium's (libsodium-wrappers-sumo, installed from npm), handed to init().
// Integers that can pass 2^53 (sizes, times, versions) are BigInt; metadata JSON is parsed by the
// strict parser below (JSON.parse would round 1.7e18 nanoseconds, and accept 1.0 or 1e3 for an
// integer, both of which the Python client refuses).

let na = null; // libsodium, once ready

export const FORMAT_VERSION = 1;
export const KEY_BYTES = 32;
export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const BLOB_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;
export const ID_BYTES = 16;
export const CHUNK_SIZE = 1 << 20;
export const META_PAD_BLOCK = 512;
export const MANIFEST_HEADER = 92;
export const KDF_FLOOR = { alg: "argon2id13", opslimit: 2, memlimit: 67108864 };
export const KDF_MODERATE = { alg: "argon2id13", opslimit: 3, memlimit: 268435456 };
const KDF_CEILING = { opslimit: 8, memlimit: 2147483648 };
const U63 = 1n << 63n;
const U64 = 1n << 64n;
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** The one error type for a failed check: no plaintext comes with it. */
export class IntegrityError extends Error {
  constructor(what) {
    super(`integrity check failed: ${what}`);
    this.name = "IntegrityError";
  }
}

export async function init(sodium) {
  await sodium.ready;
  na = sodium;
  return na;
}

/** libsodium, as init() was given it. */
export function sodium() {
  return na;
}

// -- bytes -----------------------------------------------------------------------------------

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Like Python's bytes.fromhex: pairs of hex digits, either case, ASCII whitespace between pairs. */
export function fromHex(text) {
  if (typeof text !== "string") throw new IntegrityError("not hex");
  const s = text.replace(/^[ \t\n\r\f\v]+/, "");
  const out = [];
  let i = 0;
  while (i < s.length) {
    if (" \t\n\r\f\v".includes(s[i])) {
      i += 1;
      continue;
    }
    const pair = s.slice(i, i + 2);
    if (!/^[0-9a-fA-F]{2}$/.test(pair)) throw new IntegrityError("not hex");
    out.push(parseInt(pair, 16));
    i += 2;
  }
  return new Uint8Array(out);
}

export function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function u64(n) {
  const v = BigInt(n);
  if (v < 0n || v >= U64) throw new IntegrityError("an integer outside [0, 2^64)");
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
}

export function lp(bytes) {
  return concat(u32(bytes.length), bytes);
}

function utf8(s) {
  if (/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""))) {
    throw new IntegrityError("a string that is not valid Unicode");
  }
  return enc.encode(s);
}

export function eq(a, b) {
  return a.length === b.length && na.memcmp(a, b);
}

// -- associated data and key derivation (FORMAT.md 5, 6.1) -------------------------------------

function field(f) {
  if (f instanceof Uint8Array) return f;
  if (typeof f === "string") return utf8(f);
  if (typeof f === "boolean") return Uint8Array.of(f ? 1 : 0);
  if (typeof f === "bigint" || Number.isInteger(f)) return u64(f);
  throw new TypeError("aad: a field of an unknown type");
}

export function aad(purpose, ...fields) {
  return concat(enc.encode("MGDR"), Uint8Array.of(FORMAT_VERSION), lp(utf8(purpose)), ...fields.map((f) => lp(field(f))));
}

export function deriveKey(key, label, context = new Uint8Array(0)) {
  if (key.length !== KEY_BYTES) throw new TypeError("derive_key needs a 32-byte key");
  return na.crypto_generichash(32, concat(lp(enc.encode(`megadrive-kdf:${label}`)), lp(context)), key);
}

export function keyedHash(key, data) {
  return na.crypto_generichash(32, data, key);
}

export function keyCommitment(contentKey, fileId) {
  return na.crypto_generichash(32, concat(enc.encode("megadrive-key-commitment"), fileId), contentKey);
}

export function contentId(blob) {
  return hex(na.crypto_hash_sha256(blob));
}

// -- the sealed blob (FORMAT.md 4) -------------------------------------------------------------

export function seal(key, plaintext, ad, nonce = null) {
  const n = nonce ?? na.randombytes_buf(NONCE_BYTES);
  return concat(Uint8Array.of(FORMAT_VERSION), n,
    na.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, null, n, key));
}

export function openSealed(key, blob, ad, what = "sealed record") {
  if (!(blob instanceof Uint8Array) || blob.length < BLOB_OVERHEAD || blob[0] !== FORMAT_VERSION) {
    throw new IntegrityError(what);
  }
  try {
    return na.crypto_aead_xchacha20poly1305_ietf_decrypt(null, blob.subarray(1 + NONCE_BYTES), ad,
      blob.subarray(1, 1 + NONCE_BYTES), key);
  } catch {
    throw new IntegrityError(what);
  }
}

// -- passwords and account keys (FORMAT.md 6.3, 7.1, 7.2) ---------------------------------------

export function checkKdf(offered, pinned = null, floor = KDF_FLOOR) {
  const weak = new IntegrityError("weak or unknown key derivation parameters offered by the server");
  if (!offered || offered.alg !== "argon2id13") throw weak;
  for (const k of ["opslimit", "memlimit"]) {
    const v = offered[k];
    if (!Number.isSafeInteger(v) || v < KDF_FLOOR[k] || v < floor[k] || v > KDF_CEILING[k]) throw weak;
    if (pinned && v < pinned[k]) throw weak;
  }
  return offered;
}

export function argon2Salt(salt, user) {
  return na.crypto_generichash(16, concat(lp(enc.encode("megadrive-salt")), lp(salt), lp(utf8(user))), null);
}

export function deriveRoot(password, salt, kdf, user) {
  checkKdf(kdf);
  if (!(salt instanceof Uint8Array) || salt.length !== 16) throw new IntegrityError("malformed salt");
  return na.crypto_pwhash(32, utf8(password.normalize("NFC")), argon2Salt(salt, user), kdf.opslimit,
    kdf.memlimit, na.crypto_pwhash_ALG_ARGON2ID13);
}

export function loginKeys(root) {
  return { kek: deriveKey(root, "kek"), auth: deriveKey(root, "auth") };
}

export function wrapMaster(kek, master, userId, nonce = null) {
  return seal(kek, master, aad("master-key", userId), nonce);
}

export function unwrapMaster(kek, blob, userId) {
  const m = openSealed(kek, blob, aad("master-key", userId), "master key (wrong password?)");
  if (m.length !== KEY_BYTES) throw new IntegrityError("master key");
  return m;
}

export function boxKeyStatement(userId, boxPub) {
  return aad("box-key", userId, boxPub);
}

/** The identity private keys, checked against the public ones the server answered (7.2). */
export function openIdentity(master, userId, wrapped, signPub, boxPub, boxSig) {
  const priv = openSealed(deriveKey(master, "identity"), wrapped, aad("identity", userId), "identity keys");
  if (priv.length !== 64) throw new IntegrityError("identity keys");
  const seed = priv.subarray(0, 32);
  const boxSecret = priv.subarray(32);
  const sign = na.crypto_sign_seed_keypair(seed);
  const box = na.crypto_scalarmult_base(boxSecret);
  if (!eq(sign.publicKey, signPub) || !eq(box, boxPub)) throw new IntegrityError("identity keys");
  if (!na.crypto_sign_verify_detached(boxSig, boxKeyStatement(userId, boxPub), signPub)) {
    throw new IntegrityError("identity keys");
  }
  return { signSeed: seed, signSecret: sign.privateKey, signPub: sign.publicKey, boxSecret, boxPub: box };
}

export function identityPublic(signSeed, boxSecret, userId) {
  const sign = na.crypto_sign_seed_keypair(signSeed);
  const boxPub = na.crypto_scalarmult_base(boxSecret);
  return { signPub: sign.publicKey, boxPub,
    boxSig: na.crypto_sign_detached(boxKeyStatement(userId, boxPub), sign.privateKey) };
}

export function sealIdentity(master, userId, signSeed, boxSecret, nonce = null) {
  return seal(deriveKey(master, "identity"), concat(signSeed, boxSecret), aad("identity", userId), nonce);
}

// -- padding, and JSON with exact integers ------------------------------------------------------

export function pad(raw) {
  const n = 4 + raw.length;
  const total = Math.ceil(n / META_PAD_BLOCK) * META_PAD_BLOCK;
  const out = new Uint8Array(total);
  out.set(u32(raw.length));
  out.set(raw, 4);
  return out;
}

export function unpad(padded) {
  if (padded.length < 4) throw new IntegrityError("bad padding");
  const n = new DataView(padded.buffer, padded.byteOffset).getUint32(0);
  if (4 + n > padded.length || padded.subarray(4 + n).some((b) => b !== 0)) throw new IntegrityError("bad padding");
  return padded.subarray(4, 4 + n);
}

/** JSON text → value; integers become BigInt, and a number with a fraction or exponent is a Float
 * (never an integer), so the strict checks can tell 1 from 1.0 as Python's json does. */
export class Float {
  constructor(text) {
    this.text = text;
  }
}

const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y; // (sticky: matched at i, no copy)
const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/** The JSON in a record's opened bytes (strict UTF-8, then parseJson): anything else is "malformed ``what``". */
export function jsonOf(raw, what) {
  try {
    return parseJson(dec.decode(raw));
  } catch {
    throw new IntegrityError(`malformed ${what}`);
  }
}

export function parseJson(text) {
  let i = 0;
  const fail = () => {
    throw new IntegrityError("malformed JSON");
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i += 1;
  };
  const eat = (ch) => {
    ws();
    if (text[i] !== ch) return false;
    i += 1;
    return true;
  };
  const match = (re) => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) fail();
    i = re.lastIndex;
    return m;
  };
  const sequence = (close, item) => { // items separated by commas, up to ``close``
    if (eat(close)) return;
    do item(); while (eat(","));
    if (!eat(close)) fail();
  };
  const value = (depth) => {
    if (depth > 64) fail();
    ws();
    if (eat("{")) {
      const obj = Object.create(null);
      sequence("}", () => {
        ws();
        const k = JSON.parse(match(STRING)[0]);
        if (!eat(":")) fail();
        obj[k] = value(depth + 1); // (a repeated key: the last one wins, as in Python)
      });
      return obj;
    }
    if (eat("[")) {
      const arr = [];
      sequence("]", () => arr.push(value(depth + 1)));
      return arr;
    }
    if (text[i] === '"') return JSON.parse(match(STRING)[0]);
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    const m = match(NUMBER);
    return m[2] || m[3] ? new Float(m[0]) : BigInt(m[0]);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail();
  return v;
}

/** Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False). */
export function dumpJson(v) {
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new TypeError("dumpJson: only integers");
    return String(v);
  }
  if (typeof v === "string") return JSON.stringify(v);
  if (v instanceof Float) return v.text;
  if (Array.isArray(v)) return `[${v.map(dumpJson).join(",")}]`;
  const keys = Object.keys(v).sort((a, b) => (cmpCodePoints(a, b)));
  return `{${keys.map((k) => `${JSON.stringify(k)}:${dumpJson(v[k])}`).join(",")}}`;
}

function cmpCodePoints(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let k = 0; k < Math.min(x.length, y.length); k += 1) if (x[k] !== y[k]) return x[k] - y[k];
  return x.length - y.length;
}

// -- node metadata (FORMAT.md 7.3) --------------------------------------------------------------

const SPECIAL_KINDS = ["fifo", "sock", "chr", "blk"];
const NODE_ID = /^[0-9a-f]{32}$/;

/** The meta object as the JSON holds it, checked exactly as NodeMeta.from_json checks it. */
export function checkMeta(d) {
  const bad = new IntegrityError("malformed node metadata");
  if (!isObject(d)) throw bad;
  // Present and null: Python's from_json takes that as "no value" only for u, g, l, t and lt; for every
  // other optional key it is a value of the wrong type, refused.
  for (const k of ["rk", "nn", "p", "c", "a", "rd", "x", "hl"]) {
    if (Object.prototype.hasOwnProperty.call(d, k) && d[k] === null) throw bad;
  }
  const has = (k) => Object.prototype.hasOwnProperty.call(d, k) && d[k] !== null;
  const u63 = (k, optional = false) => {
    if (optional && !has(k)) return;
    if (typeof d[k] !== "bigint" || d[k] < 0n || d[k] >= U63) throw bad;
  };
  const text = (k) => {
    if (typeof d[k] !== "string") throw bad;
  };
  const ident = (k) => {
    if (has(k) && (typeof d[k] !== "bigint" || d[k] < 0n || d[k] >= 1n << 32n)) throw bad;
  };
  for (const k of ["n", "k", "key", "fid"]) text(k);
  for (const k of ["s", "m", "mode", "v", "r"]) u63(k);
  for (const k of ["c", "a", "rd"]) u63(k, true);
  ident("u");
  ident("g");
  for (const k of ["rk", "nn"]) if (has(k) && typeof d[k] !== "boolean") throw bad;
  if (has("l") && (typeof d.l !== "string" || !d.l)) throw bad;
  if (has("t") && !SPECIAL_KINDS.includes(d.t)) throw bad;
  if (has("p") && (!isObject(d.p) || !Object.values(d.p).every((x) => typeof x === "string"))) throw bad;
  if (has("x")) {
    if (!isObject(d.x)) throw bad;
    let total = 0;
    for (const [name, value] of Object.entries(d.x)) {
      if (!name || typeof value !== "string") throw bad;
      let raw;
      try {
        raw = na.from_base64(value, na.base64_variants.ORIGINAL);
      } catch {
        throw bad;
      }
      total += enc.encode(name).length + raw.length;
    }
    if (total > 32 * 1024) throw bad;
  }
  const ids = (list) => {
    if (!Array.isArray(list) || list.length > 1000 || new Set(list).size !== list.length) throw bad;
    if (!list.every((x) => typeof x === "string" && NODE_ID.test(x))) throw bad;
  };
  if (has("hl")) ids(d.hl);
  if (has("lt")) ids([d.lt]);
  const key = fromHex(d.key);
  const fid = fromHex(d.fid);
  if (!["dir", "file"].includes(d.k) || key.length !== KEY_BYTES) throw bad;
  if (fid.length !== (d.k === "file" ? ID_BYTES : 0)) throw bad;
  if (has("t") && (d.k !== "file" || has("l"))) throw bad;
  if ((has("hl") && d.hl.length) || has("lt") || d.nn === true) {
    if (d.k !== "file") throw bad;
  }
  if (has("lt") && (has("l") || has("t") || (has("hl") && d.hl.length))) throw bad;
  return { ...d, keyBytes: key, fileIdBytes: fid };
}

/** A JSON object (not an array, not null, not a number with a fraction). */
function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Float);
}

export function metaKey(parentKey) {
  return deriveKey(parentKey, "node-meta");
}

/** The JSON bytes of a meta object (the two convenience fields of checkMeta are left out). */
export function metaJson(meta) {
  const { keyBytes, fileIdBytes, ...json } = meta; // eslint-disable-line no-unused-vars
  return enc.encode(dumpJson(json));
}

export function sealMeta(parentKey, owner, parentId, nodeId, meta, nonce = null) {
  return seal(metaKey(parentKey), pad(metaJson(meta)), aad("node-meta", owner, parentId, nodeId), nonce);
}

export function openMeta(parentKey, owner, parentId, nodeId, blob) {
  const raw = unpad(openSealed(metaKey(parentKey), blob, aad("node-meta", owner, parentId, nodeId), "node metadata"));
  return checkMeta(jsonOf(raw, "node metadata"));
}

export function nameHashKey(master) {
  return deriveKey(master, "name-hash");
}

export function nameHash(key, parentId, name) {
  return hex(keyedHash(key, aad("name", parentId, name)));
}

export function hardLinkProof(contentKey, linkNodeId) {
  return deriveKey(contentKey, "hard-link", fromHex(linkNodeId));
}

/** Whether a hard link counts (7.3), as format.proves_hard_link: the file it names is no link itself,
 * lists it, and the link's key is the proof that its maker could read the file. */
export function provesHardLink(linkNodeId, linkMeta, targetMeta) {
  return !targetMeta.lt && (targetMeta.hl || []).includes(linkNodeId)
    && eq(linkMeta.keyBytes, hardLinkProof(targetMeta.keyBytes, linkNodeId));
}

// -- manifests and chunks (FORMAT.md 7.4, 7.5) -------------------------------------------------

export function manifestKey(contentKey) {
  return deriveKey(contentKey, "manifest");
}

export function chunkKey(contentKey) {
  return deriveKey(contentKey, "chunk");
}

export function chunkCount(size, chunkSize = CHUNK_SIZE) {
  const s = BigInt(size);
  const c = BigInt(chunkSize);
  return Number((s + c - 1n) / c);
}

export function encodeManifest({ nodeId, fileId, version, size, chunkIds, commitment, chunkSize = CHUNK_SIZE }) {
  const node = fromHex(nodeId);
  if (node.length !== ID_BYTES || fileId.length !== ID_BYTES || commitment.length !== 32
      || !chunkIds.every((c) => c.length === 32)) {
    throw new TypeError("manifest: an id or commitment of the wrong length");
  }
  const head = new Uint8Array(MANIFEST_HEADER);
  const dv = new DataView(head.buffer);
  head.set(enc.encode("MDMF"), 0);
  head.set(node, 4);
  head.set(fileId, 20);
  dv.setBigUint64(36, BigInt(version));
  dv.setBigUint64(44, BigInt(size));
  dv.setUint32(52, chunkSize);
  dv.setUint32(56, chunkIds.length);
  head.set(commitment, 60);
  return concat(head, ...chunkIds);
}

export function sealManifest(contentKey, owner, nodeId, version, manifest, nonce = null) {
  return seal(manifestKey(contentKey), encodeManifest(manifest), aad("manifest", owner, nodeId, BigInt(version)), nonce);
}

/** A version's manifest, checked against the node, version, file id and key it must belong to. */
export function openManifest(contentKey, owner, nodeId, version, fileId, blob) {
  const plain = openSealed(manifestKey(contentKey), blob, aad("manifest", owner, nodeId, BigInt(version)), "manifest");
  const bad = new IntegrityError("manifest does not match its file");
  if (plain.length < MANIFEST_HEADER) throw bad;
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.length);
  const n = dv.getUint32(56);
  const chunkSize = dv.getUint32(52);
  const size = dv.getBigUint64(44);
  if (dec.decode(plain.subarray(0, 4)) !== "MDMF" || plain.length !== MANIFEST_HEADER + 32 * n || chunkSize !== CHUNK_SIZE) throw bad;
  if (hex(plain.subarray(4, 20)) !== nodeId || !eq(plain.subarray(20, 36), fileId)
      || dv.getBigUint64(36) !== BigInt(version)) throw bad;
  if (!eq(plain.subarray(60, 92), keyCommitment(contentKey, fileId))) throw bad;
  if (n !== chunkCount(size, chunkSize)) throw bad;
  const chunkIds = [];
  for (let k = 0; k < n; k += 1) chunkIds.push(plain.slice(MANIFEST_HEADER + 32 * k, MANIFEST_HEADER + 32 * (k + 1)));
  return { nodeId, fileId, version: BigInt(version), size, chunkSize, chunkIds };
}

export function sealChunk(contentKey, fileId, index, last, plaintext, nonce = null) {
  return seal(chunkKey(contentKey), plaintext, aad("chunk", fileId, BigInt(index), last), nonce);
}

/** Chunk ``index`` of a manifest: its id, then its seal, then its length (7.5), or IntegrityError. */
export function openChunk(contentKey, manifest, index, blob) {
  const n = manifest.chunkIds.length;
  if (!eq(na.crypto_hash_sha256(blob), manifest.chunkIds[index])) throw new IntegrityError(`chunk ${index} is not the one the manifest names`);
  const last = index === n - 1;
  const plain = openSealed(chunkKey(contentKey), blob, aad("chunk", manifest.fileId, BigInt(index), last), `chunk ${index}`);
  const cs = BigInt(manifest.chunkSize);
  const expect = last ? manifest.size - cs * BigInt(n - 1) : cs;
  if (BigInt(plain.length) !== expect) throw new IntegrityError(`chunk ${index} has the wrong length`);
  return plain;
}

// -- public links (FORMAT.md 7.8) --------------------------------------------------------------

/** A link record: a file's (content key and file id) or a folder's (its key, ``t: "dir"``). */
export function openLink(linkKey, owner, nodeId, blob) {
  const raw = unpad(openSealed(linkKey, blob, aad("link", owner, nodeId), "link (wrong link key or password?)"));
  const bad = new IntegrityError("malformed link");
  const d = jsonOf(raw, "link");
  if (!isObject(d) || typeof d.n !== "string" || typeof d.k !== "string") throw bad;
  const has = (k) => Object.prototype.hasOwnProperty.call(d, k);
  let kind;
  if (d.t === "dir" && !has("f")) kind = "dir";
  else if (!has("t") && typeof d.f === "string") kind = "file";
  else throw bad;
  const key = fromHex(d.k);
  const fileId = kind === "file" ? fromHex(d.f) : new Uint8Array(0);
  if (key.length !== KEY_BYTES || fileId.length !== (kind === "file" ? ID_BYTES : 0)) throw bad;
  return { owner, nodeId, name: d.n, kind, key, fileId };
}

/** The key of a password link: Argon2id on this side; only its salt and cost are on the server. */
export function deriveLinkKey(password, salt, kdf) {
  checkKdf(kdf);
  if (!(salt instanceof Uint8Array) || salt.length !== 16) throw new IntegrityError("malformed salt");
  return na.crypto_pwhash(KEY_BYTES, utf8(password.normalize("NFC")), salt, kdf.opslimit, kdf.memlimit,
    na.crypto_pwhash_ALG_ARGON2ID13);
}

export function sealLink(linkKey, { owner, nodeId, name, kind = "file", key, fileId }, nonce = null) {
  const d = kind === "dir" ? { n: name, k: hex(key), t: "dir" } : { n: name, k: hex(key), f: hex(fileId) };
  return seal(linkKey, pad(enc.encode(dumpJson(d))), aad("link", owner, nodeId), nonce);
}

// -- account records and share grants (FORMAT.md 7.7, 7.9) --------------------------------------

export function openAccountRecord(master, userId, name, version, blob) {
  return unpad(openSealed(deriveKey(master, "account-record", utf8(name)), blob,
    aad("account-record", userId, name, BigInt(version)), `account record ${JSON.stringify(name)}`));
}

/** The contact record's JSON, parsed as strictly as contacts._decode: pins by account name, and the
 * newest grant epoch seen per shared folder. */
export function parseContacts(raw) {
  const bad = new IntegrityError("malformed contact record");
  const d = jsonOf(raw, "contact record");
  if (!isObject(d) || !isObject(d.c) || !isObject(d.e)) throw bad;
  const pins = new Map();
  for (const [user, p] of Object.entries(d.c)) {
    if (!isObject(p) || typeof p.v !== "boolean" || typeof p.a !== "boolean"
        || typeof p.id !== "string" || typeof p.k !== "string") throw bad;
    const signPub = fromHex(p.k);
    if (signPub.length !== 32) throw bad;
    pins.set(user, { user, userId: p.id, signPub, verified: p.v, accepted: p.a });
  }
  const epochs = new Map();
  for (const [node, e] of Object.entries(d.e)) {
    if (typeof e !== "bigint") throw bad;
    epochs.set(node, e);
  }
  return { pins, epochs };
}

export function sealAccountRecord(master, userId, name, version, payload) {
  return seal(deriveKey(master, "account-record", utf8(name)), pad(payload),
    aad("account-record", userId, name, BigInt(version)));
}

/** signature (64) ‖ sealed box of the grant's JSON (FORMAT.md 7.7), as format.seal_grant makes it. */
export function sealGrant({ owner, recipient, nodeId, access, name, folderKey, epoch }, signSecret, recipientBoxPub) {
  const raw = enc.encode(dumpJson({ o: owner, r: recipient, n: nodeId, a: access, name, k: hex(folderKey), e: BigInt(epoch) }));
  const sealed = na.crypto_box_seal(pad(raw), recipientBoxPub);
  return concat(na.crypto_sign_detached(aad("grant", owner, recipient, nodeId, access, sealed), signSecret), sealed);
}

/** A share grant: the owner's signature first (under the pinned key), then the sealed box, then every
 * field against what the server claims (FORMAT.md 7.7). */
export function openGrant(blob, owner, recipient, nodeId, access, ownerSignPub, boxPub, boxSecret) {
  if (!(blob instanceof Uint8Array) || blob.length < 64 + 48) throw new IntegrityError("malformed share grant");
  const sig = blob.subarray(0, 64);
  const sealed = blob.subarray(64);
  if (!na.crypto_sign_verify_detached(sig, aad("grant", owner, recipient, nodeId, access, sealed), ownerSignPub)) {
    throw new IntegrityError("bad signature");
  }
  let d;
  try {
    d = parseJson(dec.decode(unpad(na.crypto_box_seal_open(sealed, boxPub, boxSecret))));
  } catch (e) {
    throw e instanceof IntegrityError ? e : new IntegrityError("a sealed key was not for us or was tampered with");
  }
  if (!d || typeof d.k !== "string" || typeof d.e !== "bigint" || typeof d.name !== "string") {
    throw new IntegrityError("malformed share grant");
  }
  const folderKey = fromHex(d.k);
  if (d.o !== owner || d.r !== recipient || d.n !== nodeId || d.a !== access || folderKey.length !== KEY_BYTES) {
    throw new IntegrityError("the share grant does not match the share");
  }
  return { owner, recipient, nodeId, access, name: d.name, folderKey, epoch: d.e };
}

/** An identity key as people compare it: 8 groups of 5 digits (crypto.fingerprint). */
export function fingerprint(signPub) {
  const digest = na.crypto_generichash(20, concat(enc.encode("megadrive-fingerprint"), signPub), null);
  const n = BigInt(`0x${hex(digest)}`);
  const groups = [];
  for (let i = 0n; i < 8n; i += 1n) groups.push(((n >> (20n * i)) % 100000n).toString().padStart(5, "0"));
  return groups.join(" ");
}

// -- recovery keys (FORMAT.md 7.1.1) -----------------------------------------------------------

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export function recoveryKeys(recoveryKey) {
  return { wrapKey: deriveKey(recoveryKey, "recovery-wrap"), auth: deriveKey(recoveryKey, "recovery-auth") };
}

export function encodeRecoveryKey(recoveryKey) {
  const raw = concat(recoveryKey, deriveKey(recoveryKey, "recovery-check").subarray(0, 3));
  let bits = "";
  for (const b of raw) bits += b.toString(2).padStart(8, "0");
  let text = "";
  for (let k = 0; k < bits.length; k += 5) text += B32[parseInt(bits.slice(k, k + 5).padEnd(5, "0"), 2)];
  return text.match(/.{4}/g).join("-");
}
