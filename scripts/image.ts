/**
 * Lays out the container image's root filesystem in dist/image/rootfs, the
 * build context of ./Containerfile, from a linux binary of this host's
 * architecture (default: this host's binary in dist/release):
 *
 *   bun scripts/image.ts [--binary FILE] [--outdir dist/image]
 *
 * The image gets the binary, the shared libraries it links and the dynamic
 * loader (as `ldd` finds them on this host), /etc/passwd and /etc/group naming the
 * switchboard user (65532), and /tmp; dist/image/owned holds what the
 * image gives to that user: /data.
 */
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { ROOT, hostTarget } from './build'
import { binaryName } from './release'

export const UID = 65532
const USAGE = 'usage: bun scripts/image.ts [--binary FILE] [--outdir DIR]'

/** The absolute paths of the libraries `binary` links and its loader, as this host's ldd resolves them. */
export function linkedLibraries(binary: string): string[] {
  const ldd = Bun.spawnSync(['ldd', binary], { stderr: 'pipe' })
  if (ldd.exitCode !== 0) throw new Error(`ldd ${binary} failed: ${ldd.stderr.toString()}${ldd.stdout.toString()}`)
  const paths = ldd.stdout
    .toString()
    .split('\n')
    .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1])
    .filter((path): path is string => path !== undefined)
  if (paths.length === 0) throw new Error(`ldd found no library for ${binary}`)
  return [...new Set(paths)]
}

/** Lays out `outdir`/rootfs (owned by root in the image) and `outdir`/owned (by the switchboard user). */
export function stageImage(binary: string, outdir: string): { rootfs: string; owned: string } {
  if (!existsSync(binary)) throw new Error(`no binary at ${binary}: build one first (bun run release --targets ${hostTarget()})`)
  const rootfs = join(outdir, 'rootfs')
  const owned = join(outdir, 'owned')
  rmSync(outdir, { recursive: true, force: true })
  for (const dir of ['usr/local/bin', 'etc', 'tmp']) mkdirSync(join(rootfs, dir), { recursive: true })
  mkdirSync(join(owned, 'data'), { recursive: true })
  copyFileSync(binary, join(rootfs, 'usr/local/bin/switchboard'))
  chmodSync(join(rootfs, 'usr/local/bin/switchboard'), 0o755)
  for (const library of linkedLibraries(binary)) {
    mkdirSync(join(rootfs, dirname(library)), { recursive: true })
    copyFileSync(library, join(rootfs, library)) // follows symlinks: the image holds the files themselves
  }
  writeFileSync(join(rootfs, 'etc/passwd'), `root:x:0:0:root:/:/sbin/nologin\nswitchboard:x:${UID}:${UID}:Switchboard:/data:/sbin/nologin\n`)
  writeFileSync(join(rootfs, 'etc/group'), `root:x:0:\nswitchboard:x:${UID}:\n`)
  chmodSync(join(rootfs, 'tmp'), 0o1777)
  chmodSync(join(owned, 'data'), 0o700)
  if (process.getuid?.() === 0) chownSync(join(owned, 'data'), UID, UID)
  return { rootfs, owned }
}

if (import.meta.main) {
  try {
    const args = process.argv.slice(2)
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    let binary = join(ROOT, 'dist/release', binaryName(version, hostTarget()))
    let outdir = join(ROOT, 'dist/image')
    for (let i = 0; i < args.length; i++) {
      if (args[i] === '--binary' && args[i + 1] !== undefined) binary = resolve(args[++i]!)
      else if (args[i] === '--outdir' && args[i + 1] !== undefined) outdir = resolve(args[++i]!)
      else throw new Error(`unknown argument ${JSON.stringify(args[i])}; ${USAGE}`)
    }
    stageImage(binary, outdir)
    process.stdout.write(`laid out ${outdir}; build the image with: podman build --format docker -t switchboard -f Containerfile ${outdir}\n`)
  } catch (error) {
    process.stderr.write(`image: ${(error as Error).message}\n`)
    process.exit(1)
  }
}
