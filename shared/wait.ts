// Waiting for something, but not for ever: the one place the bound's timer is made and cleared, so that a
// bound never holds a stopping process open after what it waited for has settled.

/**
 * Resolves true once `p` resolves, or false after `ms` (whichever comes first); a rejection of `p` before the
 * bound is passed on. The timer is cleared either way.
 */
export async function waitAtMost(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(() => true),
      new Promise<false>((r) => {
        timer = setTimeout(r, ms, false);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
