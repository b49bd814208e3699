//! `image-resize`: scales an image asset to fit a width × height box,
//! keeping its aspect ratio, and stores the result as a PNG asset.

use std::{io::Cursor, path::Path};

use image::{
    DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, imageops::FilterType, metadata::Orientation,
};
use nano_plugin_abi::{prelude::*, serde_json::json, services::AssetFilter};

/// Largest width or height the node accepts as a parameter or produces.
const MAX_SIDE: u32 = 16384;

/// The formats the node decodes, with the names its errors use.
const FORMATS: [(ImageFormat, &str); 3] = [
    (ImageFormat::Png, "PNG"),
    (ImageFormat::Jpeg, "JPEG"),
    (ImageFormat::WebP, "WebP"),
];

/// Download, resize, upload.
const STEPS: u64 = 3;

pub struct ImageResize;

impl Node for ImageResize {
    fn definition(&self) -> NodeDefinition {
        NodeDefinition::new("image-resize", "Image Resize")
            .category("Image")
            .version("1.0.0")
            .description(
                "Scales an image to fit within `width` × `height`, keeping its aspect ratio, and stores it as PNG",
            )
            .input(Port::new("image", "asset:image").description("Image to resize (PNG, JPEG or WebP)"))
            .output(Port::new("image", "asset:image").description("The resized image, as PNG"))
            .parameter(
                Parameter::number("width", 256)
                    .label("Width")
                    .description("Largest width in pixels; 0 = follow the height")
                    .extra("min", 0)
                    .extra("max", MAX_SIDE),
            )
            .parameter(
                Parameter::number("height", 0)
                    .label("Height")
                    .description("Largest height in pixels; 0 = follow the width")
                    .extra("min", 0)
                    .extra("max", MAX_SIDE),
            )
    }

    fn execute(&self, ctx: &Context) -> NodeResult {
        let hash: String = ctx.input("image")?;
        let bounds = (side(ctx, "width")?, side(ctx, "height")?);
        if bounds == (0, 0) {
            return Err(NodeError::new("width and height are both 0: set at least one of them"));
        }

        ctx.check_aborted()?;
        let bytes = ctx.assets().resolve(&hash)?;
        ctx.progress(1, STEPS);

        ctx.check_aborted()?;
        let image = decode(&bytes)?;
        drop(bytes);
        let (width, height) = fit((image.width(), image.height()), bounds)?;
        ctx.check_aborted()?;
        let png = encode_png(&image.resize_exact(width, height, FilterType::Lanczos3))?;
        drop(image);
        ctx.progress(2, STEPS);

        ctx.check_aborted()?;
        let upload = Upload::new()
            .kind("image")
            .filename(format!("{}-{width}x{height}.png", name_stem(ctx, &hash)))
            .meta(json!({"source": hash, "width": width, "height": height}));
        let asset = ctx.assets().upload(&png, &upload)?;
        ctx.progress(3, STEPS);
        Ok(Outputs::new().with("image", asset.hash))
    }
}

/// Parameter `name`, a whole number of pixels from 0 to [`MAX_SIDE`].
fn side(ctx: &Context, name: &str) -> Result<u32, NodeError> {
    let value: f64 = ctx.param(name)?;
    if value.fract() != 0.0 || !(0.0..=f64::from(MAX_SIDE)).contains(&value) {
        return Err(NodeError::new(format!(
            "{name} must be a whole number of pixels from 0 to {MAX_SIDE}, got {value}"
        )));
    }
    Ok(value as u32)
}

/// The size of a `source` image scaled to fit within `bounds` (0 = no
/// bound on that side; not both), aspect ratio kept, at least 1 pixel a side.
fn fit((source_w, source_h): (u32, u32), (bound_w, bound_h): (u32, u32)) -> Result<(u32, u32), NodeError> {
    if source_w == 0 || source_h == 0 {
        return Err(NodeError::new("the image has no pixels"));
    }
    let (sw, sh, bw, bh) = (
        u64::from(source_w),
        u64::from(source_h),
        u64::from(bound_w),
        u64::from(bound_h),
    );
    // The width binds when the box is relatively narrower: bw/sw <= bh/sh.
    let width_binds = bh == 0 || (bw != 0 && bw * sh <= bh * sw);
    let (w, h) = if width_binds {
        (bw, scale(sh, bw, sw))
    } else {
        (scale(sw, bh, sh), bh)
    };
    if w > u64::from(MAX_SIDE) || h > u64::from(MAX_SIDE) {
        return Err(NodeError::new(format!(
            "a {source_w}x{source_h} image fitted to width {bound_w}, height {bound_h} would be {w}x{h} pixels, \
             more than {MAX_SIDE} on a side"
        )));
    }
    Ok((w as u32, h as u32))
}

/// `x · num / den`, rounded, and at least 1.
fn scale(x: u64, num: u64, den: u64) -> u64 {
    ((2 * x * num + den) / (2 * den)).max(1)
}

/// Decodes a PNG, JPEG or WebP image, turned upright per its EXIF
/// orientation (phone photos are stored sideways).
fn decode(bytes: &[u8]) -> Result<DynamicImage, NodeError> {
    let guessed = image::guess_format(bytes).ok();
    let Some(&(format, name)) = FORMATS.iter().find(|(format, _)| Some(*format) == guessed) else {
        return Err(NodeError::new("input 'image' is not a PNG, JPEG or WebP image"));
    };
    let undecodable = |e: ImageError| {
        NodeError::new(format!(
            "cannot decode input 'image' as {name} ({e}); accepted: PNG, JPEG or WebP"
        ))
    };
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(undecodable)?;
    // A broken EXIF block is no reason to refuse the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn encode_png(image: &DynamicImage) -> Result<Vec<u8>, NodeError> {
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, ImageFormat::Png)
        .map_err(|e| NodeError::new(format!("cannot encode the resized image as PNG: {e}")))?;
    Ok(png.into_inner())
}

/// The input asset's name without its extension, for the output's file
/// name: `image` when NanoCore knows no name or cannot be asked.
fn name_stem(ctx: &Context, hash: &str) -> String {
    let filter = AssetFilter {
        hash: Some(hash.to_owned()),
        ..AssetFilter::default()
    };
    ctx.assets()
        .list(&filter)
        .ok()
        .and_then(|assets| assets.into_iter().find(|asset| asset.hash == hash)?.name)
        .and_then(|name| Some(Path::new(&name).file_stem()?.to_string_lossy().into_owned()))
        .filter(|stem| !stem.is_empty())
        .unwrap_or_else(|| "image".to_owned())
}

nano_plugin_abi::export_nodes![ImageResize];

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};
    use nano_plugin_abi::{
        serde_json::{Value, json},
        testing::{self, AssetStore},
    };

    /// A 640×480 gradient, encoded as `format`.
    fn picture(format: ImageFormat) -> Vec<u8> {
        let image = RgbImage::from_fn(640, 480, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let mut bytes = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image).write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    /// Runs the node on asset `hash`; the asset it stored and its pixels.
    fn resize(store: &AssetStore, hash: &str, params: Value) -> Result<(AssetInfo, DynamicImage), NodeError> {
        let run = testing::run_with(&ImageResize, json!({"image": [hash]}), params, store);
        let out = run.result?;
        let output = out.get("image").unwrap()[0].as_str().unwrap().to_owned();
        let (info, bytes) = store.get(&output).expect("the output is stored");
        assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Png);
        Ok((info, image::load_from_memory(&bytes).unwrap()))
    }

    fn error(store: &AssetStore, hash: &str, params: Value) -> String {
        resize(store, hash, params).unwrap_err().message().to_owned()
    }

    #[test]
    fn fits_the_width_keeping_the_aspect_ratio_and_records_the_source() {
        let store = AssetStore::new();
        let hash = store.put(picture(ImageFormat::Png), "image");
        let run = testing::run_with(&ImageResize, json!({"image": [&hash]}), json!({"width": 64}), &store);
        let steps: Vec<_> = run.statuses.iter().map(|s| s["progress"].clone()).collect();
        assert_eq!(
            steps,
            [
                json!({"step": 1, "total": 3}),
                json!({"step": 2, "total": 3}),
                json!({"step": 3, "total": 3})
            ]
        );

        let (info, image) = resize(&store, &hash, json!({"width": 64})).unwrap();
        assert_eq!((image.width(), image.height()), (64, 48));
        assert_eq!(info.name.as_deref(), Some("image-64x48.png"));
        assert_eq!(info.kind.as_deref(), Some("image"));
        assert_eq!(info.meta, json!({"source": hash, "width": 64, "height": 48}));
    }

    #[test]
    fn jpeg_and_webp_inputs_work_and_either_side_may_bind() {
        let store = AssetStore::new();
        let jpeg = store.put(picture(ImageFormat::Jpeg), "image");
        let (_, image) = resize(&store, &jpeg, json!({"width": 0, "height": 24})).unwrap();
        assert_eq!((image.width(), image.height()), (32, 24));

        let webp = store.put(picture(ImageFormat::WebP), "image");
        let (_, image) = resize(&store, &webp, json!({"width": 100, "height": 100})).unwrap();
        assert_eq!((image.width(), image.height()), (100, 75));
        let (_, image) = resize(&store, &webp, json!({"width": 1000, "height": 60})).unwrap();
        assert_eq!((image.width(), image.height()), (80, 60));
    }

    #[test]
    fn the_output_is_named_after_the_input() {
        let store = AssetStore::new();
        let hash = store.put(picture(ImageFormat::Png), "image");
        let (first, _) = resize(&store, &hash, json!({"width": 64})).unwrap();
        let (second, _) = resize(&store, &first.hash, json!({"width": 32})).unwrap();
        assert_eq!(second.name.as_deref(), Some("image-64x48-32x24.png"));
    }

    #[test]
    fn an_unknown_asset_is_not_found() {
        let unknown = format!("sha256:{}", "0".repeat(64));
        let message = error(&AssetStore::new(), &unknown, json!({}));
        assert!(message.contains("not found"), "{message}");
    }

    #[test]
    fn undecodable_input_names_the_accepted_formats() {
        let store = AssetStore::new();
        let garbage = store.put(b"certainly not an image".to_vec(), "image");
        let message = error(&store, &garbage, json!({}));
        assert_eq!(message, "input 'image' is not a PNG, JPEG or WebP image");

        let truncated = store.put(picture(ImageFormat::Png)[..200].to_vec(), "image");
        let message = error(&store, &truncated, json!({}));
        assert!(message.starts_with("cannot decode input 'image' as PNG"), "{message}");
        assert!(message.ends_with("accepted: PNG, JPEG or WebP"), "{message}");
    }

    #[test]
    fn sizes_out_of_range_are_refused_before_downloading() {
        let unknown = format!("sha256:{}", "0".repeat(64));
        let store = AssetStore::new();
        for (params, expected) in [
            (
                json!({"width": -1}),
                "width must be a whole number of pixels from 0 to 16384, got -1",
            ),
            (
                json!({"height": 20000}),
                "height must be a whole number of pixels from 0 to 16384, got 20000",
            ),
            (
                json!({"width": 10.5}),
                "width must be a whole number of pixels from 0 to 16384, got 10.5",
            ),
            (
                json!({"width": 0}),
                "width and height are both 0: set at least one of them",
            ),
        ] {
            assert_eq!(error(&store, &unknown, params), expected);
        }
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_within_bounds_and_never_gives_zero_pixels() {
        assert_eq!(fit((640, 480), (64, 0)), Ok((64, 48)));
        assert_eq!(fit((640, 480), (0, 48)), Ok((64, 48)));
        assert_eq!(fit((640, 480), (100, 100)), Ok((100, 75)));
        assert_eq!(fit((480, 640), (100, 100)), Ok((75, 100)));
        assert_eq!(fit((640, 480), (1280, 0)), Ok((1280, 960)));
        assert_eq!(fit((3, 2), (2, 0)), Ok((2, 1)));
        assert_eq!(fit((10000, 1), (10, 0)), Ok((10, 1)));
        let message = fit((1, 1000), (100, 0)).unwrap_err().to_string();
        assert!(
            message.ends_with("would be 100x100000 pixels, more than 16384 on a side"),
            "{message}"
        );
    }

    #[test]
    fn stops_when_aborted() {
        let run = testing::run_aborted(&ImageResize, json!({"image": "sha256:x"}), json!({}));
        assert_eq!(run.result.unwrap_err().message(), "Execution aborted");
        assert!(run.statuses.is_empty());
    }
}
