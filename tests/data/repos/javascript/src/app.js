import { clamp, lerp } from './math.js';

export function animate(t, from, to) {
  const k = clamp(t, 0, 1);
  // dcode: fill interpolate between from and to
}

export function reset() {
  throw new Error("not implemented");
}

const noop = () => {};
