// cargo xtask interop: Cloudflare's `web-bot-auth` npm package (pinned in package-lock.json)
// against vouch, in both directions.
//
// web-bot-auth 0.1.3, the latest release, sends and reads the legacy Signature-Agent of earlier
// drafts (one string, covered as the whole field), not the dictionary member the current draft
// requires; vouch speaks that form only when asked (--legacy-signature-agent).
//
//   node web_bot_auth_interop.mjs sign OUT_DIR
//       Makes a fresh Ed25519 key, writes OUT_DIR/directory.json (its JWK Set) and
//       OUT_DIR/cf-*.http, raw requests signed by web-bot-auth, for `vouch check`.
//   node web_bot_auth_interop.mjs verify DIRECTORY_JSON REQUEST.http...
//       Verifies raw requests signed by `vouch sign --profile web-bot-auth` with web-bot-auth,
//       with the key whose thumbprint is the keyid, and proves a tampered copy is refused.
//
// Any failure exits non-zero.

import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jwkToKeyID, signatureHeaders, verify } from "web-bot-auth";
import { helpers, signerFromJWK, verifierFromJWK } from "web-bot-auth/crypto";

const AGENT = "https://agent.example";

function fail(message) {
  console.error(`web-bot-auth interop: ${message}`);
  process.exit(1);
}

/// A raw HTTP/1.1 request: start line, fields, blank line.
function raw(url, headers) {
  const u = new URL(url);
  const lines = [`GET ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`];
  for (const [name, value] of Object.entries(headers)) {
    lines.push(`${name}: ${value}`);
  }
  return lines.join("\n") + "\n\n";
}

/// Parses a raw request back into a Request (https, the Host as authority).
function parseRaw(text) {
  const [head] = text.replace(/\r\n/g, "\n").split("\n\n");
  const [start, ...fields] = head.split("\n");
  const [method, target] = start.split(" ");
  const headers = new Headers();
  let host = "";
  for (const line of fields) {
    const i = line.indexOf(":");
    const name = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (name.toLowerCase() === "host") host = value;
    else headers.append(name, value);
  }
  return new Request(`https://${host}${target}`, { method, headers });
}

async function sign(outDir) {
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  const kid = await jwkToKeyID(
    { kty: jwk.kty, crv: jwk.crv, x: jwk.x },
    helpers.WEBCRYPTO_SHA256,
    helpers.BASE64URL_DECODE,
  );
  writeFileSync(
    join(outDir, "directory.json"),
    JSON.stringify({ keys: [{ kty: jwk.kty, crv: jwk.crv, kid, x: jwk.x }] }),
  );
  const signer = await signerFromJWK(jwk);
  if (signer.keyid !== kid) fail(`signer keyid ${signer.keyid} is not ${kid}`);
  const cases = {
    // The package's default: @authority and the Signature-Agent field.
    "cf-default.http": undefined,
    // Narrowed to the method and path too.
    "cf-narrow.http": ["@authority", "@method", "@path", "signature-agent"],
  };
  const now = new Date();
  for (const [name, components] of Object.entries(cases)) {
    const url = "https://origin.example/page/1";
    const agent = `"${AGENT}"`;
    const request = new Request(url, { headers: { "Signature-Agent": agent } });
    const headers = await signatureHeaders(request, signer, {
      created: now,
      expires: new Date(now.getTime() + 300_000),
      components,
    });
    writeFileSync(
      join(outDir, name),
      raw(url, {
        "Signature-Agent": agent,
        "Signature-Input": headers["Signature-Input"],
        Signature: headers["Signature"],
      }),
    );
  }
  console.log(`web-bot-auth signed ${Object.keys(cases).length} requests as ${kid}`);
}

async function verifyOne(request, keys) {
  const check = async (data, signature, params) => {
    const jwk = keys.find((k) => k.kid === params.keyid);
    if (!jwk) throw new Error(`no key ${params.keyid} in the directory`);
    const kid = await jwkToKeyID(
      { kty: jwk.kty, crv: jwk.crv, x: jwk.x },
      helpers.WEBCRYPTO_SHA256,
      helpers.BASE64URL_DECODE,
    );
    if (kid !== params.keyid) throw new Error("keyid is not the key's thumbprint");
    return (await verifierFromJWK(jwk))(data, signature, params);
  };
  await verify(request, check);
}

async function verifyAll(directory, files) {
  const keys = JSON.parse(readFileSync(directory, "utf8")).keys;
  if (files.length === 0) fail("no request to verify");
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    await verifyOne(parseRaw(text), keys).catch((e) =>
      fail(`${file}: web-bot-auth refused vouch's signature: ${e.message}`),
    );
    // The same signature over another Signature-Agent must not verify.
    const tampered = parseRaw(text.replace(AGENT, "https://evil.example"));
    let refused = false;
    await verifyOne(tampered, keys).catch(() => {
      refused = true;
    });
    if (!refused) fail(`${file}: web-bot-auth accepted a tampered Signature-Agent`);
  }
  console.log(`web-bot-auth verified ${files.length} vouch-signed requests, refused their tampered copies`);
}

const [command, ...args] = process.argv.slice(2);
if (command === "sign" && args.length === 1) await sign(args[0]);
else if (command === "verify" && args.length >= 1) await verifyAll(args[0], args.slice(1));
else fail("usage: sign OUT_DIR | verify DIRECTORY_JSON REQUEST.http...");
