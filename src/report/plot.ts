// Hand-written SVG plot of rate-distortion curves: bpp on x, PSNR on y, a
// polyline with markers per curve, grid lines, ticks, axis labels and a legend.

import type { RdCurve } from "./rd.ts";

/** Options of {@linkcode renderRdPlot}. */
export interface RdPlotOptions {
  /** Title above the plot. Default: none. */
  title?: string;
  /** Image width in SVG pixels, the legend included. Default: 720 plus the legend's width. */
  width?: number;
  /** Image height in SVG pixels. Default: 480. */
  height?: number;
  /** Shown bpp range [min, max]. Points outside are clipped. Default: 0 to the largest bpp, rounded up to a tick. */
  bppRange?: [number, number];
  /**
   * Shown PSNR range [min, max] in dB. Points outside are clipped. Default:
   * the PSNR range of the points within the bpp range, rounded out to ticks.
   */
  psnrRange?: [number, number];
}

/** Line and marker colors, assigned to curves in order (the Tableau 10 palette). */
const COLORS = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

const MARKERS = ["circle", "square", "triangle", "diamond"] as const;

const MARGIN = { left: 64, right: 20, top: 40, bottom: 52 };
const FONT = 'font-family="sans-serif" font-size="12"';

/** Axis ticks: evenly spaced round values covering [min, max]. */
interface Axis {
  min: number;
  max: number;
  ticks: number[];
  decimals: number;
}

/**
 * Renders the curves as a standalone SVG document. Each curve becomes one
 * `<polyline>` through its points sorted by bpp, with a marker per point and
 * a legend entry. Markers are `<circle>`, `<rect>` or `<polygon>` elements.
 */
export function renderRdPlot(curves: RdCurve[], options: RdPlotOptions = {}): string {
  // The legend sits right of the plot area, so that it never hides points.
  const legendWidth = legendBoxWidth(curves) + 16;
  const width = options.width ?? 720 + legendWidth;
  const height = options.height ?? 480;
  const area = {
    left: MARGIN.left,
    top: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right - legendWidth,
    height: height - MARGIN.top - MARGIN.bottom,
  };
  if (area.width < 50 || area.height < 50) {
    throw new Error(`Plot size ${width}x${height} is too small: use at least 160x150 pixels.`);
  }

  const points = curves.flatMap((curve) => curve.points);
  const xAxis = options.bppRange
    ? fixedAxis(options.bppRange, "bppRange")
    : roundedAxis(0, Math.max(0, ...points.map((point) => point.bpp)));
  // The PSNR range covers only the points shown, so a narrow bpp range zooms in on PSNR too.
  const shown = points.filter((point) => point.bpp >= xAxis.min && point.bpp <= xAxis.max);
  const psnrValues = (shown.length > 0 ? shown : points).map((point) => point.psnr);
  const yAxis = options.psnrRange
    ? fixedAxis(options.psnrRange, "psnrRange")
    : roundedAxis(Math.min(...psnrValues), Math.max(...psnrValues));
  const toX = (bpp: number) =>
    area.left + ((bpp - xAxis.min) / (xAxis.max - xAxis.min)) * area.width;
  const toY = (psnr: number) =>
    area.top + area.height - ((psnr - yAxis.min) / (yAxis.max - yAxis.min)) * area.height;

  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`,
  ];
  if (options.title) {
    // An estimate: 14-pixel bold sans-serif averages under 8 pixels per character.
    const maxChars = Math.floor((width - 20) / 8);
    const title = options.title.length > maxChars ? `${options.title.slice(0, maxChars - 1)}\u2026` : options.title;
    parts.push(
      `<text x="${
        width / 2
      }" y="24" text-anchor="middle" font-family="sans-serif" font-size="14" ` +
        `font-weight="bold">${escapeXml(title)}</text>`,
    );
  }
  parts.push(...renderAxes(area, xAxis, yAxis, toX, toY));

  // Lines stop at the frame. Markers may sit on it, so their clip region leaves room for half a marker.
  const pad = 6;
  parts.push(
    `<clipPath id="plot-lines"><rect x="${area.left}" y="${area.top}" ` +
      `width="${area.width}" height="${area.height}"/></clipPath>`,
    `<clipPath id="plot-markers"><rect x="${area.left - pad}" y="${area.top - pad}" ` +
      `width="${area.width + 2 * pad}" height="${area.height + 2 * pad}"/></clipPath>`,
  );
  curves.forEach((curve, index) => {
    const color = COLORS[index % COLORS.length];
    const marker = MARKERS[index % MARKERS.length];
    const sorted = [...curve.points].sort((p, q) => p.bpp - q.bpp);
    const coordinates = sorted.map((point) =>
      `${format(toX(point.bpp))},${format(toY(point.psnr))}`
    );
    parts.push(
      `<polyline clip-path="url(#plot-lines)" fill="none" stroke="${color}" stroke-width="1.8" ` +
        `stroke-linejoin="round" points="${coordinates.join(" ")}"/>`,
      `<g clip-path="url(#plot-markers)">`,
      ...sorted.map((point) => renderMarker(marker, toX(point.bpp), toY(point.psnr), color)),
      "</g>",
    );
  });
  parts.push(...renderLegend(curves, area));
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function renderAxes(
  area: { left: number; top: number; width: number; height: number },
  xAxis: Axis,
  yAxis: Axis,
  toX: (value: number) => number,
  toY: (value: number) => number,
): string[] {
  const parts: string[] = [];
  const bottom = area.top + area.height;
  const right = area.left + area.width;
  for (const tick of xAxis.ticks) {
    const x = format(toX(tick));
    parts.push(
      `<line x1="${x}" y1="${area.top}" x2="${x}" y2="${bottom}" stroke="#e0e0e0"/>`,
      `<line x1="${x}" y1="${bottom}" x2="${x}" y2="${bottom + 5}" stroke="black"/>`,
      `<text x="${x}" y="${bottom + 18}" text-anchor="middle" ${FONT}>${
        tick.toFixed(xAxis.decimals)
      }</text>`,
    );
  }
  for (const tick of yAxis.ticks) {
    const y = format(toY(tick));
    parts.push(
      `<line x1="${area.left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e0e0e0"/>`,
      `<line x1="${area.left - 5}" y1="${y}" x2="${area.left}" y2="${y}" stroke="black"/>`,
      `<text x="${area.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle" ${FONT}>` +
        `${tick.toFixed(yAxis.decimals)}</text>`,
    );
  }
  parts.push(
    `<rect x="${area.left}" y="${area.top}" width="${area.width}" height="${area.height}" ` +
      `fill="none" stroke="black"/>`,
    `<text x="${format(area.left + area.width / 2)}" y="${
      bottom + 40
    }" text-anchor="middle" ${FONT}>` +
      "Rate (bits per pixel)</text>",
    `<text x="18" y="${format(area.top + area.height / 2)}" text-anchor="middle" ${FONT} ` +
      `transform="rotate(-90 18 ${format(area.top + area.height / 2)})">PSNR (dB)</text>`,
  );
  return parts;
}

// Width of the legend box. An estimate of the text width: 12-pixel
// sans-serif averages under 7 pixels per character.
function legendBoxWidth(curves: RdCurve[]): number {
  return Math.max(0, ...curves.map((curve) => curve.method.length)) * 7 + 44;
}

/** Draws the legend right of the plot area, aligned with its top. */
function renderLegend(
  curves: RdCurve[],
  area: { left: number; top: number; width: number; height: number },
): string[] {
  const rowHeight = 18;
  const boxWidth = legendBoxWidth(curves);
  const boxHeight = curves.length * rowHeight + 10;
  const left = area.left + area.width + 16;
  const top = area.top;
  const parts = [
    `<rect x="${left}" y="${top}" width="${boxWidth}" height="${boxHeight}" fill="white" ` +
    `fill-opacity="0.9" stroke="#999999"/>`,
  ];
  curves.forEach((curve, index) => {
    const color = COLORS[index % COLORS.length];
    const y = top + 5 + rowHeight * index + rowHeight / 2;
    parts.push(
      `<line x1="${left + 8}" y1="${y}" x2="${
        left + 32
      }" y2="${y}" stroke="${color}" stroke-width="1.8"/>`,
      renderMarker(MARKERS[index % MARKERS.length], left + 20, y, color),
      `<text x="${left + 38}" y="${y}" dominant-baseline="middle" ${FONT}>${
        escapeXml(curve.method)
      }</text>`,
    );
  });
  return parts;
}

function renderMarker(shape: typeof MARKERS[number], x: number, y: number, color: string): string {
  const size = 4;
  if (shape === "circle") {
    return `<circle cx="${format(x)}" cy="${format(y)}" r="${size}" fill="${color}"/>`;
  }
  if (shape === "square") {
    return `<rect x="${format(x - size)}" y="${format(y - size)}" width="${2 * size}" ` +
      `height="${2 * size}" fill="${color}"/>`;
  }
  const corners = shape === "triangle"
    ? [[x, y - size - 1], [x + size + 1, y + size], [x - size - 1, y + size]]
    : [[x, y - size - 1], [x + size + 1, y], [x, y + size + 1], [x - size - 1, y]];
  const pointList = corners.map(([cx, cy]) => `${format(cx)},${format(cy)}`).join(" ");
  return `<polygon points="${pointList}" fill="${color}"/>`;
}

/** Widens [min, max] to round tick values, about six ticks apart. */
function roundedAxis(min: number, max: number): Axis {
  if (max <= min) {
    // A single value still needs a visible span around it.
    min -= 1;
    max += 1;
  }
  const step = tickStep(max - min);
  return makeAxis(Math.floor(min / step) * step, Math.ceil(max / step) * step, step);
}

function fixedAxis(range: [number, number], name: string): Axis {
  const [min, max] = range;
  if (!(Number.isFinite(min) && Number.isFinite(max) && max > min)) {
    throw new Error(
      `Plot option ${name} [${min}, ${max}] is invalid: pass two finite numbers, min < max.`,
    );
  }
  return makeAxis(min, max, tickStep(max - min));
}

/** Ticks at the multiples of `step` within [min, max]. */
function makeAxis(min: number, max: number, step: number): Axis {
  const ticks: number[] = [];
  // The tolerance keeps a tick that lands on `max` despite rounding in the division.
  for (let k = Math.ceil(min / step - 1e-9); k * step <= max + step * 1e-9; k++) {
    ticks.push(k * step);
  }
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return { min, max, ticks, decimals };
}

/** Returns 1, 2 or 5 times a power of ten, so that `span` covers about six steps. */
function tickStep(span: number): number {
  const raw = span / 6;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  if (normalized < 1.5) return magnitude;
  if (normalized < 3.5) return 2 * magnitude;
  if (normalized < 7.5) return 5 * magnitude;
  return 10 * magnitude;
}

function format(value: number): string {
  return String(Math.round(value * 100) / 100);
}

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}
