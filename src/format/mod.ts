// File formats: the .rinr container for encoded datasets and safetensors for
// trained classifier weights.

export * from "./rinr.ts";
export * from "./rinr_parse.ts";
export * from "./rinr_file.ts";
export * from "./summary.ts";
export * from "./safetensors.ts";
