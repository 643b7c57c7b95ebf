// timing.mjs: what the benchmark scripts (bench.mjs, gateway-bench.mjs)
// share: the median of samples and the time an async call takes, in ms.
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

export async function time(fn) {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}
