// A throwaway certificate authority and certificates it signs, in plain Node (the image has no
// openssl CLI): just the DER a TLS peer checks, ECDSA P-256 with SHA-256. For demos and tests
// (the compose topology), not for a real deployment.

import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';

/** One DER element: tag, definite length, body. */
function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  if (n > 0xffff) throw new Error('x509: element too long');
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, ...parts);

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [a! * 40 + b!];
  for (const v of rest) {
    const bytes = [v & 0x7f];
    for (let x = v >>> 7; x > 0; x >>>= 7) bytes.unshift((x & 0x7f) | 0x80);
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A positive INTEGER (a leading zero when the high bit is set). */
const uint = (b: Buffer) => tlv(0x02, b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
const TRUE = tlv(0x01, Buffer.from([0xff]));
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer, unused = 0) => tlv(0x03, Buffer.from([unused]), b);

/** UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

const commonName = (cn: string) => seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
const extension = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [TRUE] : []), octets(value));

/** A subject alternative name: an IP address, or a DNS name. */
function altName(name: string): Buffer {
  if (isIP(name) === 4) return tlv(0x87, Buffer.from(name.split('.').map(Number)));
  if (!/^[A-Za-z0-9]([A-Za-z0-9-.]*[A-Za-z0-9])?$/.test(name)) throw new Error(`x509: ${JSON.stringify(name)} is not a DNS name or an IPv4 address`);
  return tlv(0x82, Buffer.from(name, 'ascii'));
}

export interface Issued {
  certPem: string;
  keyPem: string;
  key: KeyObject;
  keyId: Buffer;
}

function pem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** A certificate for `names` (the first is its common name), signed by `issuer`, or self-signed as a CA when there is none. */
export function issue(opts: { names: string[]; days: number; issuer?: { name: string; key: KeyObject; keyId: Buffer }; ca?: boolean }): Issued {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const keyId = createHash('sha1').update(spki).digest();
  const now = Date.now();
  const ca = opts.ca ?? false;
  const exts = [
    // basicConstraints: cA for the authority; keyUsage: keyCertSign+cRLSign, or digitalSignature.
    extension('2.5.29.19', true, ca ? seq(TRUE) : seq()),
    extension('2.5.29.15', true, ca ? bits(Buffer.from([0x06]), 1) : bits(Buffer.from([0x80]), 7)),
    extension('2.5.29.14', false, octets(keyId)),
    ...(opts.issuer ? [extension('2.5.29.35', false, seq(tlv(0x80, opts.issuer.keyId)))] : []),
    ...(ca
      ? []
      : [
          extension('2.5.29.17', false, seq(...opts.names.map(altName))),
          // serverAuth and clientAuth: the same certificate may serve for mTLS.
          extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
        ]),
  ];
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const tbs = seq(
    tlv(0xa0, uint(Buffer.from([2]))),
    uint(serial),
    ECDSA_SHA256,
    commonName(opts.issuer?.name ?? opts.names[0]!),
    seq(time(new Date(now - 3600_000)), time(new Date(now + opts.days * 86400_000))),
    commonName(opts.names[0]!),
    spki,
    tlv(0xa3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, opts.issuer?.key ?? privateKey);
  return {
    certPem: pem(seq(tbs, ECDSA_SHA256, bits(signature))),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    key: privateKey,
    keyId,
  };
}
