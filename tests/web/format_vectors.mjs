// The known-answer vectors of docs/FORMAT.md section 12, computed by the web client's format module
// (server/web/js/format.mjs) under node. Run by tests/web/test_format_js.py, which passes the vectors'
// inputs and the expected values (tests/crypto/test_crypto_vectors.py EXPECTED) as a JSON file.
// Every expected value must be computed here: one left out is a failure, not a skip.
//
//   node tests/web/format_vectors.mjs VECTORS.json

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as F from "../../server/web/js/format.mjs";

const require = createRequire(new URL("../../server/web/package.json", import.meta.url));
const sodium = await F.init(require("libsodium-wrappers-sumo"));
const { inputs, expected } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const BYTES = ["K_TEST", "SALT", "MASTER", "SIGN_SEED", "BOX_SECRET", "ROOT_KEY", "FILE_FID", "CONTENT_KEY", "CONTENT",
  "BIG_FID", "BIG_KEY", "BIG", "LINK_FID"]; // (hex in the JSON; the other inputs are text)
const I = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, BYTES.includes(k) ? F.fromHex(v) : v]));
const nonce = (b) => new Uint8Array(24).fill(b);
const te = new TextEncoder();
const got = {};
const extra = []; // checks beyond byte equality (opening what was sealed, refusing what was changed)

for (const label of ["kek", "auth", "identity", "name-hash", "node-meta", "manifest", "chunk"]) {
  got[`derive_key/${label}`] = F.deriveKey(I.K_TEST, label);
}
got["derive_key/example+context"] = F.deriveKey(I.K_TEST, "example", te.encode("context"));
got["keyed_hash/abc"] = F.keyedHash(I.K_TEST, te.encode("abc"));
got["key_commitment/zero-fid"] = F.keyCommitment(I.K_TEST, new Uint8Array(16));
got["aad/master-key"] = F.aad("master-key", I.USER_ID);
got["aad/node-meta-root"] = F.aad("node-meta", I.USER_ID, "", I.ROOT_ID);
got["aad/manifest"] = F.aad("manifest", I.USER_ID, I.FILE_NODE, 1);
got["aad/chunk"] = F.aad("chunk", I.FILE_FID, 0, true);

got["argon2id/salt-input"] = F.concat(F.lp(te.encode("megadrive-salt")), F.lp(I.SALT), F.lp(te.encode(I.USER)));
got["argon2id/salt"] = F.argon2Salt(I.SALT, I.USER);
got["argon2id/root"] = F.deriveRoot(I.PASSWORD, I.SALT, F.KDF_FLOOR, I.USER);
({ kek: got.kek, auth: got.auth } = F.loginKeys(got["argon2id/root"]));
got["blob/master"] = F.wrapMaster(got.kek, I.MASTER, I.USER_ID, nonce(0xa1));
extra.push(["unwrap master", F.hex(F.unwrapMaster(got.kek, F.fromHex(expected["blob/master"]), I.USER_ID)) === F.hex(I.MASTER)]);
const rk = F.recoveryKeys(I.K_TEST);
got["recovery/wrap-key"] = rk.wrapKey;
got["recovery/auth"] = rk.auth;
got["recovery/check"] = F.deriveKey(I.K_TEST, "recovery-check").subarray(0, 3);
got["recovery/text"] = te.encode(F.encodeRecoveryKey(I.K_TEST));
got["aad/recovery-master-key"] = F.aad("recovery-master-key", I.USER_ID);
got["blob/recovery-master"] = F.seal(rk.wrapKey, I.MASTER, got["aad/recovery-master-key"], nonce(0xaa));

const pub = F.identityPublic(I.SIGN_SEED, I.BOX_SECRET, I.USER_ID);
got["identity/sign_pub"] = pub.signPub;
got["identity/box_pub"] = pub.boxPub;
got["identity/statement"] = F.boxKeyStatement(I.USER_ID, pub.boxPub);
got["identity/box_sig"] = pub.boxSig;
got["identity/key"] = F.deriveKey(I.MASTER, "identity");
got["blob/identity"] = F.sealIdentity(I.MASTER, I.USER_ID, I.SIGN_SEED, I.BOX_SECRET, nonce(0xa2));
const opened = F.openIdentity(I.MASTER, I.USER_ID, F.fromHex(expected["blob/identity"]), pub.signPub, pub.boxPub, pub.boxSig);
extra.push(["open identity", F.hex(opened.signSeed) === F.hex(I.SIGN_SEED)]);
const otherSig = F.identityPublic(I.SIGN_SEED, I.BOX_SECRET, "f".repeat(32)).boxSig; // signed for another account
extra.push(["identity with another account's box signature refused", throws(() => F.openIdentity(I.MASTER, I.USER_ID, F.fromHex(expected["blob/identity"]), pub.signPub, pub.boxPub, otherSig))]);

got["name_hash/key"] = F.nameHashKey(I.MASTER);
got["name_hash/hello"] = F.fromHex(F.nameHash(got["name_hash/key"], I.ROOT_ID, "hello.txt"));
got["name_hash/resume"] = F.fromHex(F.nameHash(got["name_hash/key"], I.ROOT_ID, "R\u00e9sum\u00e9.pdf"));

const M = BigInt(I.MTIME);
const base = { s: 0n, m: M, mode: 0n, v: 0n, r: 0n, p: {} };
const metas = {
  root: { ...base, n: "", k: "dir", key: F.hex(I.ROOT_KEY), fid: "", mode: 0o755n },
  hello: { ...base, n: "hello.txt", k: "file", key: F.hex(I.CONTENT_KEY), fid: F.hex(I.FILE_FID), s: BigInt(I.CONTENT.length), mode: 0o644n, v: 1n, r: 1n },
  posix: { ...base, n: "hello.txt", k: "file", key: F.hex(I.CONTENT_KEY), fid: F.hex(I.FILE_FID), s: BigInt(I.CONTENT.length), mode: 0o4750n, v: 1n, r: 5n, u: 1000n, g: 100n, c: M + 1n, a: M - 1n, x: { "user.tag": "cmVk" }, hl: [I.LINK_NODE] },
  device: { ...base, n: "null", k: "file", key: F.hex(Uint8Array.from({ length: 32 }, (_, k) => 0x10 + k)), fid: F.hex(I.LINK_FID), mode: 0o600n, t: "chr", rd: 0x0103n },
  link: { ...base, n: "hello-link.txt", k: "file", key: F.hex(F.hardLinkProof(I.CONTENT_KEY, I.LINK_NODE)), fid: F.hex(I.LINK_FID), lt: I.FILE_NODE },
};
for (const [which, meta] of Object.entries(metas)) {
  got[`meta_json/${which}`] = F.metaJson(F.checkMeta(meta));
  const back = F.parseJson(new TextDecoder().decode(F.fromHex(expected[`meta_json/${which}`])));
  extra.push([`meta ${which} parses back to the same JSON`, F.hex(F.metaJson(F.checkMeta(back))) === expected[`meta_json/${which}`]]);
}
got["hard_link_proof/hello"] = F.hardLinkProof(I.CONTENT_KEY, I.LINK_NODE);
got["meta_key/root"] = F.metaKey(I.MASTER);
got["blob/meta-root"] = F.sealMeta(I.MASTER, I.USER_ID, "", I.ROOT_ID, metas.root, nonce(0xa3));
got["meta_key/hello"] = F.metaKey(I.ROOT_KEY);
got["blob/meta-hello"] = F.sealMeta(I.ROOT_KEY, I.USER_ID, I.ROOT_ID, I.FILE_NODE, metas.hello, nonce(0xa4));
const hello = F.openMeta(I.ROOT_KEY, I.USER_ID, I.ROOT_ID, I.FILE_NODE, F.fromHex(expected["blob/meta-hello"]));
extra.push(["open meta", hello.n === "hello.txt" && hello.m === M && hello.s === 18n]);
extra.push(["meta under another parent refused", throws(() => F.openMeta(I.ROOT_KEY, I.USER_ID, I.FILE_NODE, I.FILE_NODE, F.fromHex(expected["blob/meta-hello"])))]);
for (const [what, json] of [["a float size", '{"fid":"","k":"dir","key":"' + "00".repeat(32) + '","m":0,"mode":0,"n":"","r":0,"s":1.0,"v":0}'],
  ["a bool version", '{"fid":"","k":"dir","key":"' + "00".repeat(32) + '","m":0,"mode":0,"n":"","r":0,"s":0,"v":true}'],
  ["a short key", '{"fid":"","k":"dir","key":"00","m":0,"mode":0,"n":"","r":0,"s":0,"v":0}'],
  ["a size of 2^63", '{"fid":"","k":"dir","key":"' + "00".repeat(32) + '","m":0,"mode":0,"n":"","r":0,"s":9223372036854775808,"v":0}'],
  ["a null rekey flag", '{"fid":"","k":"dir","key":"' + "00".repeat(32) + '","m":0,"mode":0,"n":"","r":0,"rk":null,"s":0,"v":0}'],
  ["properties that are a number", '{"fid":"","k":"dir","key":"' + "00".repeat(32) + '","m":0,"mode":0,"n":"","p":1.5,"r":0,"s":0,"v":0}']]) {
  const blob = F.seal(F.metaKey(I.ROOT_KEY), F.pad(te.encode(json)), F.aad("node-meta", I.USER_ID, I.ROOT_ID, I.FILE_NODE));
  extra.push([`meta with ${what} refused`, throws(() => F.openMeta(I.ROOT_KEY, I.USER_ID, I.ROOT_ID, I.FILE_NODE, blob))]);
}

got["chunk_key/hello"] = F.chunkKey(I.CONTENT_KEY);
got["manifest_key/hello"] = F.manifestKey(I.CONTENT_KEY);
got["commitment/hello"] = F.keyCommitment(I.CONTENT_KEY, I.FILE_FID);
got["blob/chunk-hello"] = F.sealChunk(I.CONTENT_KEY, I.FILE_FID, 0, true, I.CONTENT, nonce(0xa5));
got["chunk_id/hello"] = sodium.crypto_hash_sha256(got["blob/chunk-hello"]);
const helloManifest = { nodeId: I.FILE_NODE, fileId: I.FILE_FID, version: 1, size: I.CONTENT.length, chunkIds: [got["chunk_id/hello"]], commitment: got["commitment/hello"] };
got["manifest_plain/hello"] = F.encodeManifest(helloManifest);
got["blob/manifest-hello"] = F.sealManifest(I.CONTENT_KEY, I.USER_ID, I.FILE_NODE, 1, helloManifest, nonce(0xa6));
const m1 = F.openManifest(I.CONTENT_KEY, I.USER_ID, I.FILE_NODE, 1, I.FILE_FID, F.fromHex(expected["blob/manifest-hello"]));
extra.push(["open manifest and chunk", new TextDecoder().decode(F.openChunk(I.CONTENT_KEY, m1, 0, F.fromHex(expected["blob/chunk-hello"]))) === "Hello, MegaDrive!\n"]);
extra.push(["manifest as version 2 refused", throws(() => F.openManifest(I.CONTENT_KEY, I.USER_ID, I.FILE_NODE, 2, I.FILE_FID, F.fromHex(expected["blob/manifest-hello"])))]);
const flipped = F.fromHex(expected["blob/chunk-hello"]);
flipped[30] ^= 1;
extra.push(["a changed chunk byte refused", throws(() => F.openChunk(I.CONTENT_KEY, m1, 0, flipped))]);

const oddSize = F.sealManifest(I.CONTENT_KEY, I.USER_ID, I.FILE_NODE, 1, { ...helloManifest, chunkSize: 1 << 19 });
extra.push(["a manifest of another chunk size refused", throws(() => F.openManifest(I.CONTENT_KEY, I.USER_ID, I.FILE_NODE, 1, I.FILE_FID, oddSize))]);
extra.push(["a short salt refused", throws(() => F.deriveRoot(I.PASSWORD, I.SALT.subarray(0, 8), F.KDF_FLOOR, I.USER))]);
const CS = F.CHUNK_SIZE;
const b0 = F.sealChunk(I.BIG_KEY, I.BIG_FID, 0, false, I.BIG.subarray(0, CS), nonce(0xa7));
const b1 = F.sealChunk(I.BIG_KEY, I.BIG_FID, 1, true, I.BIG.subarray(CS), nonce(0xa8));
got["chunk_id/big0"] = sodium.crypto_hash_sha256(b0);
got["blob/chunk-big1"] = b1;
got["chunk_id/big1"] = sodium.crypto_hash_sha256(b1);
got["blob/manifest-big"] = F.sealManifest(I.BIG_KEY, I.USER_ID, I.BIG_NODE, 1, { nodeId: I.BIG_NODE, fileId: I.BIG_FID, version: 1, size: I.BIG.length, chunkIds: [got["chunk_id/big0"], got["chunk_id/big1"]], commitment: F.keyCommitment(I.BIG_KEY, I.BIG_FID) }, nonce(0xa9));
const mb = F.openManifest(I.BIG_KEY, I.USER_ID, I.BIG_NODE, 1, I.BIG_FID, got["blob/manifest-big"]);
extra.push(["two chunks swapped refused", throws(() => F.openChunk(I.BIG_KEY, mb, 0, b1))]);

const grantBlob = F.fromHex(inputs.GRANT);
const g = F.openGrant(grantBlob, I.USER_ID, inputs.RECIPIENT_ID, I.FILE_NODE, "write", F.fromHex(inputs.OWNER_SIGN_PUB),
  F.fromHex(inputs.RECIPIENT_BOX_PUB), F.fromHex(inputs.RECIPIENT_BOX_SECRET));
extra.push(["open a Python grant", g.name === "Shared folder" && F.hex(g.folderKey) === F.hex(I.ROOT_KEY) && g.epoch === 123456789n]);
extra.push(["a grant for read access refused as write's", throws(() => F.openGrant(grantBlob, I.USER_ID, inputs.RECIPIENT_ID, I.FILE_NODE, "read", F.fromHex(inputs.OWNER_SIGN_PUB), F.fromHex(inputs.RECIPIENT_BOX_PUB), F.fromHex(inputs.RECIPIENT_BOX_SECRET)))]);
const book = F.parseContacts(F.openAccountRecord(I.MASTER, I.USER_ID, "contacts", 3, F.fromHex(inputs.RECORD)));
extra.push(["open the Python contact record", book.pins.get("bob").accepted === true && book.epochs.get(I.FILE_NODE) === 123456789n
  && F.hex(book.pins.get("bob").signPub) === inputs.OWNER_SIGN_PUB]);
const fileLink = F.openLink(I.K_TEST, I.USER_ID, I.FILE_NODE, F.fromHex(inputs.FILE_LINK));
extra.push(["open a Python file link record", fileLink.kind === "file" && fileLink.name === "hello.txt"
  && F.hex(fileLink.key) === F.hex(I.CONTENT_KEY) && F.hex(fileLink.fileId) === F.hex(I.FILE_FID)]);
const folderLink = F.openLink(I.K_TEST, I.USER_ID, I.ROOT_ID, F.fromHex(inputs.FOLDER_LINK));
extra.push(["open a Python folder link record", folderLink.kind === "dir" && folderLink.name === "Photos"
  && F.hex(folderLink.key) === F.hex(I.ROOT_KEY) && folderLink.fileId.length === 0]);
extra.push(["a folder link record as another node's refused", throws(() => F.openLink(I.K_TEST, I.USER_ID, I.FILE_NODE, F.fromHex(inputs.FOLDER_LINK)))]);
extra.push(["a link record naming a folder and a file refused", throws(() => F.openLink(I.K_TEST, I.USER_ID, I.ROOT_ID, F.fromHex(inputs.BOTH_LINK)))]);
const again = F.sealLink(I.K_TEST, { owner: I.USER_ID, nodeId: I.ROOT_ID, name: "Photos", kind: "dir", key: I.ROOT_KEY }, nonce(7));
extra.push(["a folder link record sealed here is the Python one's JSON", F.hex(F.openSealed(I.K_TEST, again, F.aad("link", I.USER_ID, I.ROOT_ID)))
  === F.hex(F.openSealed(I.K_TEST, F.fromHex(inputs.FOLDER_LINK), F.aad("link", I.USER_ID, I.ROOT_ID)))]);
extra.push(["the same fingerprint", F.fingerprint(F.fromHex(inputs.OWNER_SIGN_PUB)) === inputs.FINGERPRINT]);

function throws(fn) {
  try {
    fn();
    return false;
  } catch (e) {
    return e instanceof F.IntegrityError;
  }
}

let failed = 0;
for (const [name, want] of Object.entries(expected)) {
  if (!(name in got)) {
    console.log(`MISSING ${name}`);
    failed += 1;
  } else if (F.hex(got[name]) !== want) {
    console.log(`DIFFERS ${name}: ${F.hex(got[name]).slice(0, 64)} != ${want.slice(0, 64)}`);
    failed += 1;
  }
}
for (const [name, ok] of extra) {
  if (!ok) {
    console.log(`FAILED ${name}`);
    failed += 1;
  }
}
console.log(`${Object.keys(expected).length - failed} of ${Object.keys(expected).length} vectors, ${extra.filter(([, ok]) => ok).length} of ${extra.length} checks`);
process.exit(failed ? 1 : 0);
