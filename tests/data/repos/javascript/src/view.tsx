import { Circle } from './shapes';

export function View(props: { circle: Circle }) {
  return <div>{props.circle.area()}</div>;
}
