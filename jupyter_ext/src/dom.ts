/** A small element builder: text always goes in as text, never as HTML. */
export type Child = Node | string | null | undefined | false;

export function h(tag: string, attrs: Record<string, string | number | boolean | undefined> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (name === 'style') {
      element.setAttribute('style', String(value));
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children) {
    if (child) {
      element.append(child);
    }
  }
  return element;
}

/** Replace an element's children, skipping the empty ones. */
export function fill(element: HTMLElement, ...children: Child[]): void {
  element.replaceChildren(...children.filter((c): c is Node | string => Boolean(c)));
}

/** `1.5` as "1.5", `2` as "2": resources are often whole numbers. */
export function num(value: number, digits = 2): string {
  return Number(value.toFixed(digits)).toString();
}

/** `67200512` as "67.2 MB": decimal units, three significant figures (the notebook's format_bytes). */
export function bytes(value: number): string {
  for (const [unit, size] of [['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) {
    if (value >= size) {
      return `${Number((value / size).toPrecision(3))} ${unit}`;
    }
  }
  return `${value} B`;
}

export function money(value: number): string {
  return `$${value.toFixed(2)}/h`;
}
