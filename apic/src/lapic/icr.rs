//! The interrupt command register (SDM Vol. 3A §11.6.1, Figure 11-12; x2APIC §11.12.9): decoding
//! an ICR write into an [`Ipi`] and the sender-side checks of Table 11-3.

use crate::event::IpiDropReason;
use crate::message::{DeliveryMode, DestMode, Ipi, Shorthand, Trigger};
use crate::regs::{
    ICR_LEVEL_ASSERT, ICR_LOGICAL, ICR_SHORTHAND_SHIFT, ICR_TRIGGER_LEVEL, ICR_VECTOR,
};

/// Decodes an ICR value into the message it sends, or why the sender drops it.
///
/// - Delivery modes 011 and 111 are reserved in the ICR: dropped.
/// - A level-triggered message with level 0 (INIT level de-assert and its relatives) is dropped:
///   Pentium 4 and later processors do not support it (Table 11-3 note 2). A level-triggered
///   message with level 1 is sent as edge triggered.
/// - The shorthands "self" and "all including self" are valid only with the fixed delivery mode
///   (Table 11-3); other combinations are dropped.
/// - A fixed or lowest-priority IPI with a vector below 16 is dropped and sets ESR "send illegal
///   vector" on the sender (§11.5.3); the caller records the error.
pub(crate) fn decode(low: u32, dest: u32, x2apic: bool, source: u32) -> Result<Ipi, IpiDropReason> {
    let delivery = DeliveryMode::from_bits(low >> 8);
    let shorthand = Shorthand::from_bits(low >> ICR_SHORTHAND_SHIFT);
    let vector = (low & ICR_VECTOR) as u8;
    match delivery {
        DeliveryMode::Reserved | DeliveryMode::ExtInt => {
            return Err(IpiDropReason::ReservedDeliveryMode)
        }
        _ => {}
    }
    if low & ICR_TRIGGER_LEVEL != 0 && low & ICR_LEVEL_ASSERT == 0 {
        return Err(IpiDropReason::LevelDeassert);
    }
    if matches!(shorthand, Shorthand::SelfOnly | Shorthand::AllIncludingSelf)
        && delivery != DeliveryMode::Fixed
    {
        return Err(IpiDropReason::InvalidCombination);
    }
    if matches!(delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16 {
        return Err(IpiDropReason::IllegalVector);
    }
    Ok(Ipi {
        source,
        vector,
        delivery,
        dest_mode: if low & ICR_LOGICAL != 0 {
            DestMode::Logical
        } else {
            DestMode::Physical
        },
        trigger: Trigger::Edge,
        shorthand,
        dest,
        x2apic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_physical() {
        let ipi = decode(0x0000_4031, 3, false, 0).unwrap();
        assert_eq!(ipi.vector, 0x31);
        assert_eq!(ipi.delivery, DeliveryMode::Fixed);
        assert_eq!(ipi.dest_mode, DestMode::Physical);
        assert_eq!(ipi.shorthand, Shorthand::None);
        assert_eq!(ipi.trigger, Trigger::Edge);
        assert_eq!(ipi.dest, 3);
    }

    #[test]
    fn level_assert_is_sent_as_edge_and_deassert_is_dropped() {
        // INIT, level, assert (as Linux sends it).
        let ipi = decode(0x0000_C500, 1, false, 0).unwrap();
        assert_eq!(ipi.delivery, DeliveryMode::Init);
        assert_eq!(ipi.trigger, Trigger::Edge);
        // INIT level de-assert.
        assert_eq!(
            decode(0x0000_8500, 1, false, 0),
            Err(IpiDropReason::LevelDeassert)
        );
    }

    #[test]
    fn table_11_3_combinations() {
        let self_bits = 1 << 18;
        let all_bits = 2 << 18;
        let others_bits = 3 << 18;
        assert!(decode(self_bits | 0x40, 0, false, 0).is_ok());
        assert!(decode(all_bits | 0x40, 0, false, 0).is_ok());
        for mode in [1u32, 2, 4, 5, 6] {
            let low = (mode << 8) | 0x40;
            assert_eq!(
                decode(self_bits | low, 0, false, 0),
                Err(IpiDropReason::InvalidCombination)
            );
            assert_eq!(
                decode(all_bits | low, 0, false, 0),
                Err(IpiDropReason::InvalidCombination)
            );
            assert!(decode(others_bits | low, 0, false, 0).is_ok());
        }
        assert_eq!(
            decode(0x300, 0, false, 0),
            Err(IpiDropReason::ReservedDeliveryMode)
        );
        assert_eq!(
            decode(0x700, 0, false, 0),
            Err(IpiDropReason::ReservedDeliveryMode)
        );
    }

    #[test]
    fn illegal_vectors_only_for_fixed_and_lowest_priority() {
        assert_eq!(decode(0x0F, 0, false, 0), Err(IpiDropReason::IllegalVector));
        assert_eq!(
            decode(0x10F, 0, false, 0),
            Err(IpiDropReason::IllegalVector)
        );
        assert!(decode(0x400, 0, false, 0).is_ok(), "NMI ignores the vector");
        assert!(decode(0x600, 0, false, 0).is_ok(), "SIPI page 0 is legal");
    }
}
