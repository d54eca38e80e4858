/**
 * Certificates for TinyKV's TLS, made with `openssl` (Debian's, always present where TinyKV runs):
 * a certificate authority and certificates it signs, each naming the hosts it serves. The dev
 * cluster's `--secure` mode, the tests and `deno task credentials` (with which a deployment makes
 * its CA and certificates, docs/deploy.md) use it.
 *
 * @module
 */
import { resolve } from "node:path";

/** A PEM certificate and its key. */
export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
}

/** Makes a CA in `dir` (`ca.crt`, `ca.key`, P-256, ten years); returns the paths. */
export async function makeCertificateAuthority(
  dir: string,
  name = "TinyKV CA",
): Promise<CertificateFiles> {
  await Deno.mkdir(dir, { recursive: true });
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "3650",
    "-subj",
    `/CN=${name}`,
  ], dir);
  await Deno.chmod(`${dir}/ca.key`, 0o600);
  return { cert: `${dir}/ca.crt`, key: `${dir}/ca.key` };
}

/**
 * Makes `<name>.crt` and `<name>.key` in `dir`, signed by `ca`, for `hosts` (DNS names and IP
 * addresses; the first is the subject); usable by servers and clients.
 */
export async function makeCertificate(
  dir: string,
  ca: CertificateFiles,
  name: string,
  hosts: readonly string[],
): Promise<CertificateFiles> {
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(name)) throw new Error(`Bad certificate name "${name}"`);
  if (hosts.length === 0) throw new Error(`A certificate needs at least one host: "${name}"`);
  await Deno.mkdir(dir, { recursive: true });
  const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
  await Deno.writeTextFile(
    `${dir}/${name}.ext`,
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  try {
    await openssl([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${hosts[0]}`,
    ], dir);
    await openssl([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      // openssl runs in `dir`: the CA's paths, relative to this process's directory, are made
      // absolute (a relative `dir` such as the dev cluster's "./data/secure/pki" is not also
      // the CA's directory from there).
      "-CA",
      resolve(ca.cert),
      "-CAkey",
      resolve(ca.key),
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "825",
      "-extfile",
      `${name}.ext`,
    ], dir);
  } finally {
    await Deno.remove(`${dir}/${name}.csr`).catch(() => {});
    await Deno.remove(`${dir}/${name}.ext`).catch(() => {});
  }
  await Deno.chmod(`${dir}/${name}.key`, 0o600);
  return { cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` };
}
