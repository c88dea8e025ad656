import pkg from '../package.json' with { type: 'json' }

/** Switchboard's version, from package.json (embedded at build time). */
export const VERSION: string = pkg.version

// Set by scripts/build.ts with `bun build --define`; absent when Switchboard runs from source.
declare const SWITCHBOARD_COMMIT: string | undefined
declare const SWITCHBOARD_TARGET: string | undefined

/** The commit a binary was built from; undefined when run from the source tree. */
export const COMMIT: string | undefined = typeof SWITCHBOARD_COMMIT === 'string' ? SWITCHBOARD_COMMIT : undefined

/** The release target a binary was built for (linux-x64-musl, ...); from source, the platform it runs on. */
export const TARGET: string = typeof SWITCHBOARD_TARGET === 'string' ? SWITCHBOARD_TARGET : `${process.platform}-${process.arch}`

/** What `switchboard --version` prints: "switchboard 0.1.0 (commit 8c56eaf0a1b2, linux-x64-musl)". */
export const versionLine = (): string => `switchboard ${VERSION} (${COMMIT === undefined ? 'from source' : `commit ${COMMIT}`}, ${TARGET})`
