import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A throwaway certificate for 127.0.0.1, made with the openssl CLI (Node cannot make certificates). */
export function selfSignedCertificate (): { key: Buffer, cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'sse-cert-'))
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')
    ], { stdio: 'pipe', timeout: 10_000 })
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }
  } catch (err) {
    throw new Error(`openssl could not make a test certificate (apt-get install -y openssl): ${(err as Error).message}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
