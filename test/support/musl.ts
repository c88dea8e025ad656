/**
 * A libstdc++.so.6 for musl, so the linux-*-musl binaries (which link
 * libstdc++.so.6 and musl's libc: Alpine's `apk add libstdc++`) run on this
 * Debian host: Debian ships no musl build of libstdc++, so one is linked
 * here from the objects of Debian's libstdc++.a that the binary uses, against
 * musl's libc, with the few glibc-only symbols those objects call given in
 * test/support/musl/glibc-shim.c. Needs gcc, g++ (libstdc++.a) and musl-tools.
 */
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'

const MUSL_LIBC = '/usr/lib/x86_64-linux-musl/libc.so'

function run(command: string[]): string {
  const ran = Bun.spawnSync(command, { stdout: 'pipe', stderr: 'pipe' })
  if (ran.exitCode !== 0) throw new Error(`${command.slice(0, 3).join(' ')}… failed: ${ran.stderr.toString()}`)
  return ran.stdout.toString()
}

/** Builds libstdc++.so.6 for `binary` into `dir` and returns `dir` (for LD_LIBRARY_PATH). */
export function muslLibstdcxx(binary: string, dir: string): string {
  mkdirSync(dir, { recursive: true })
  const gccDir = run(['gcc', '-print-libgcc-file-name']).trim().replace(/\/libgcc\.a$/, '')
  const musl = new Set(run(['nm', '-D', '--defined-only', MUSL_LIBC]).split('\n').map((line) => line.split(' ')[2]))
  // What the binary takes from libstdc++: its undefined C++ symbols and the type-info tables it copies in.
  const wanted = run(['nm', '-D', binary])
    .split('\n')
    .map((line) => /^\s*(?:[0-9a-f]+)?\s+([UvVwWB])\s+(\S+)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null && /^(_Z|__cxa_(bad|demangle|guard|pure)|__dynamic_cast|__once_proxy)/.test(match[2]!) && (match[1] !== 'B' || match[2]!.startsWith('_ZTV')))
    .map((match) => match[2]!.replace(/@.*/, ''))
    .filter((symbol) => !musl.has(symbol))
  const shim = join(dir, 'glibc-shim.o')
  run(['musl-gcc', '-O2', '-fPIC', '-c', resolve(import.meta.dir, 'musl/glibc-shim.c'), '-o', shim])
  run([
    'gcc', '-shared', '-nostdlib', '-o', join(dir, 'libstdc++.so.6'), '-Wl,-soname,libstdc++.so.6', '-Wl,--no-undefined',
    join(gccDir, 'crtbeginS.o'), ...wanted.map((symbol) => `-Wl,-u,${symbol}`), shim,
    join(gccDir, 'libstdc++.a'), join(gccDir, 'libgcc_eh.a'), join(gccDir, 'libgcc.a'), MUSL_LIBC, join(gccDir, 'crtendS.o'),
  ])
  return dir
}
