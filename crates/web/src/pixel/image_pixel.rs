//! The attributes that describe a frame (PS3.3 C.7.6.3 Image Pixel module, C.7.6.6 Multi-frame
//! module), read and checked before any size made from them is used.

use dimsum_dataset::dicom_core::Tag;
use dimsum_dataset::dicom_core::header::HasLength;
use dimsum_dataset::dicom_dictionary_std::tags;
use dimsum_dataset::dicom_object::InMemDicomObject;

use super::PixelError;

/// How the pixels of each frame are laid out (PS3.3 C.7.6.3.1, PS3.5 §8.1.1): the Image Pixel
/// module attributes and Number of Frames, checked to be usable sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePixel {
    /// (0028,0010) Rows, at least 1.
    pub rows: u16,
    /// (0028,0011) Columns, at least 1.
    pub columns: u16,
    /// (0028,0002) Samples per Pixel, 1 to 4.
    pub samples_per_pixel: u16,
    /// (0028,0100) Bits Allocated: 1, or a multiple of 8 up to 64.
    pub bits_allocated: u16,
    /// (0028,0101) Bits Stored, 1 to Bits Allocated (Bits Allocated when absent).
    pub bits_stored: u16,
    /// (0028,0103) Pixel Representation: 0 unsigned, 1 two's complement.
    pub pixel_representation: u16,
    /// (0028,0006) Planar Configuration (0 when absent).
    pub planar_configuration: u16,
    /// (0028,0004) Photometric Interpretation, without padding.
    pub photometric_interpretation: String,
    /// (0028,0008) Number of Frames, at least 1 (1 when absent).
    pub number_of_frames: u32,
}

impl ImagePixel {
    /// Reads the attributes from a data set (the attributes before its Pixel Data).
    pub fn from_attributes(attributes: &InMemDicomObject) -> Result<Self, PixelError> {
        let rows = required_u16(attributes, tags::ROWS, "Rows")?;
        let columns = required_u16(attributes, tags::COLUMNS, "Columns")?;
        let samples_per_pixel =
            optional_u16(attributes, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")?.unwrap_or(1);
        let bits_allocated = required_u16(attributes, tags::BITS_ALLOCATED, "Bits Allocated")?;
        let bits_stored =
            optional_u16(attributes, tags::BITS_STORED, "Bits Stored")?.unwrap_or(bits_allocated);
        let pixel_representation = optional_u16(
            attributes,
            tags::PIXEL_REPRESENTATION,
            "Pixel Representation",
        )?
        .unwrap_or(0);
        let planar_configuration = optional_u16(
            attributes,
            tags::PLANAR_CONFIGURATION,
            "Planar Configuration",
        )?
        .unwrap_or(0);
        let photometric_interpretation = attributes
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|element| element.to_str().ok())
            .map(|text| text.trim_matches([' ', '\0']).to_owned())
            .unwrap_or_else(|| "MONOCHROME2".to_owned());
        let number_of_frames = match attributes.get(tags::NUMBER_OF_FRAMES) {
            None => 1,
            Some(element) if element.is_empty() => 1,
            Some(element) => {
                let text = element
                    .to_str()
                    .map(|t| t.trim().to_owned())
                    .unwrap_or_default();
                match element.to_int::<i64>() {
                    Ok(frames) if frames >= 1 => u32::try_from(frames)
                        .map_err(|_| invalid("Number of Frames", &text, "too large"))?,
                    Ok(_) => return Err(invalid("Number of Frames", &text, "it is below 1")),
                    Err(_) => return Err(invalid("Number of Frames", &text, "not a whole number")),
                }
            }
        };
        let image = ImagePixel {
            rows,
            columns,
            samples_per_pixel,
            bits_allocated,
            bits_stored,
            pixel_representation,
            planar_configuration,
            photometric_interpretation,
            number_of_frames,
        };
        image.check()?;
        Ok(image)
    }

    fn check(&self) -> Result<(), PixelError> {
        let text = |value: u16| value.to_string();
        if self.rows == 0 {
            return Err(invalid(
                "Rows",
                &text(self.rows),
                "an image has at least one row",
            ));
        }
        if self.columns == 0 {
            return Err(invalid(
                "Columns",
                &text(self.columns),
                "an image has at least one column",
            ));
        }
        if !(1..=4).contains(&self.samples_per_pixel) {
            return Err(invalid(
                "Samples per Pixel",
                &text(self.samples_per_pixel),
                "it is 1, 3 or 4 (PS3.3 C.7.6.3.1.1)",
            ));
        }
        let ba = self.bits_allocated;
        if !(ba == 1 || (ba.is_multiple_of(8) && (8..=64).contains(&ba))) {
            return Err(invalid(
                "Bits Allocated",
                &text(ba),
                "it is 1 or a multiple of 8 up to 64 (PS3.5 §8.1.1)",
            ));
        }
        if self.bits_stored == 0 || self.bits_stored > ba {
            return Err(invalid(
                "Bits Stored",
                &text(self.bits_stored),
                "it is from 1 to Bits Allocated",
            ));
        }
        if self.pixel_representation > 1 {
            return Err(invalid(
                "Pixel Representation",
                &text(self.pixel_representation),
                "it is 0 or 1",
            ));
        }
        if self.planar_configuration > 1 {
            return Err(invalid(
                "Planar Configuration",
                &text(self.planar_configuration),
                "it is 0 or 1",
            ));
        }
        Ok(())
    }

    /// The number of pixels of a frame.
    pub fn pixels(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.columns)
    }

    /// The bits of one native frame (PS3.5 §8.1.1): Rows × Columns × Samples per Pixel × Bits
    /// Allocated. At most 65,535² × 4 × 64 bits: no overflow.
    pub fn frame_bits(&self) -> u64 {
        self.pixels() * u64::from(self.samples_per_pixel) * u64::from(self.bits_allocated)
    }

    /// The bytes of one frame once decoded (1-bit frames packed, as stored), rounded up.
    pub fn frame_bytes(&self) -> u64 {
        self.frame_bits().div_ceil(8)
    }

    /// Whether the pixels are grey levels (MONOCHROME1 or MONOCHROME2).
    pub fn is_monochrome(&self) -> bool {
        matches!(
            self.photometric_interpretation.as_str(),
            "MONOCHROME1" | "MONOCHROME2"
        )
    }
}

fn invalid(name: &'static str, value: &str, reason: &'static str) -> PixelError {
    PixelError::InvalidAttribute {
        name,
        value: value.chars().take(64).collect(),
        reason,
    }
}

fn optional_u16(
    attributes: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<Option<u16>, PixelError> {
    let Some(element) = attributes.get(tag) else {
        return Ok(None);
    };
    if element.is_empty() {
        return Ok(None);
    }
    element.to_int::<u16>().map(Some).map_err(|_| {
        let value = element.to_str().map(|t| t.into_owned()).unwrap_or_default();
        invalid(name, &value, "not a 16-bit unsigned number")
    })
}

fn required_u16(
    attributes: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<u16, PixelError> {
    optional_u16(attributes, tag, name)?.ok_or(PixelError::MissingAttribute { name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dimsum_dataset::dicom_core::value::PrimitiveValue;
    use dimsum_dataset::dicom_core::{DataElement, VR};

    fn attributes(rows: u16, columns: u16, bits: u16, frames: Option<&str>) -> InMemDicomObject {
        let mut object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(columns)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits)),
            DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from("MONOCHROME2 "),
            ),
        ]);
        if let Some(frames) = frames {
            object.put(DataElement::new(
                tags::NUMBER_OF_FRAMES,
                VR::IS,
                PrimitiveValue::from(frames),
            ));
        }
        object
    }

    #[test]
    fn sizes_come_from_the_attributes() {
        let image = ImagePixel::from_attributes(&attributes(3, 5, 16, Some("4 "))).expect("image");
        assert_eq!(image.number_of_frames, 4);
        assert_eq!(image.frame_bits(), 3 * 5 * 16);
        assert_eq!(image.frame_bytes(), 30);
        assert_eq!(image.photometric_interpretation, "MONOCHROME2");
        let bits = ImagePixel::from_attributes(&attributes(3, 5, 1, None)).expect("1 bit");
        assert_eq!(bits.frame_bytes(), 2);
        assert_eq!(bits.number_of_frames, 1);
    }

    #[test]
    fn unusable_values_are_refused() {
        for (rows, columns, bits, frames) in [
            (0, 5, 16, None),
            (3, 0, 16, None),
            (3, 5, 12, None),
            (3, 5, 0, None),
            (3, 5, 128, None),
            (3, 5, 16, Some("0")),
            (3, 5, 16, Some("-2")),
            (3, 5, 16, Some("many")),
            (3, 5, 16, Some("99999999999")),
        ] {
            assert!(
                ImagePixel::from_attributes(&attributes(rows, columns, bits, frames)).is_err(),
                "{rows} {columns} {bits} {frames:?}"
            );
        }
        let mut missing = attributes(3, 5, 16, None);
        missing.remove_element(tags::ROWS);
        assert!(matches!(
            ImagePixel::from_attributes(&missing),
            Err(PixelError::MissingAttribute { name: "Rows" })
        ));
    }
}
