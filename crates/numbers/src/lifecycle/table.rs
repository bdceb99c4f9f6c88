//! Kazoo's state-transition table (`knm_number_states.erl`, `knm_number_states`' transition table): which state a number may move
//! to from which, who may move it (the read gate of `knm_phone_number:handle_fetch/2` and the authorization of `knm_phone_number`'s authorization), and what
//! the move changes on the document.

use super::Ctx;
use crate::account::AccountId;
use crate::auth;
use crate::doc::{NumberDoc, NumberState};
use crate::error::Error;

/// `knm_phone_number:handle_fetch/2` read gate, applied to every loaded document.
pub(super) fn gate(
    doc: &NumberDoc,
    assign_to: Option<&AccountId>,
    ctx: &Ctx<'_>,
) -> Result<(), Error> {
    if auth::can_read(ctx.accounts, ctx.auth_by, doc.state, doc.assigned_to.as_ref(), assign_to) {
        Ok(())
    } else {
        Err(Error::unauthorized())
    }
}

pub(super) fn authorize(
    doc: &NumberDoc,
    assign_to: Option<&AccountId>,
    ctx: &Ctx<'_>,
) -> Result<(), Error> {
    if auth::is_authorized(ctx.accounts, ctx.auth_by, doc.assigned_to.as_ref(), assign_to) {
        Ok(())
    } else {
        Err(Error::unauthorized())
    }
}

/// `knm_number_states:move_phone_number_to_state` "move to state S".
pub(super) fn move_to(doc: &mut NumberDoc, target: NumberState, assign_to: Option<&AccountId>) {
    if target != NumberState::Available && doc.assigned_to.as_ref() != assign_to {
        doc.set_assigned_to(assign_to.cloned());
    }
    doc.state = target;
}

/// The `knm_number_states`' transition table table: changes `doc` towards `target` and returns whether the carrier must acquire.
///
/// # Errors
/// The table's errors: `invalid_state_transition` (with the MDN causes), 403 `forbidden`,
/// `no_change_required`.
pub fn apply_transition(
    doc: &mut NumberDoc,
    target: NumberState,
    assign_to: Option<&AccountId>,
    ctx: &Ctx<'_>,
) -> Result<bool, Error> {
    use NumberState as S;
    let current = doc.state;
    let invalid = || Error::invalid_transition(Some(current.as_str()), target.as_str());
    let mdn_guard = |doc: &NumberDoc| -> Result<(), Error> {
        if doc.is_mdn() {
            Err(Error::invalid_transition(Some("'MDN'"), target.as_str()))
        } else {
            Ok(())
        }
    };
    let mdn_in_service = |doc: &NumberDoc| -> Result<(), Error> {
        if doc.is_mdn() {
            Err(invalid())
        } else {
            Ok(())
        }
    };
    match target {
        S::Reserved => {
            mdn_guard(doc)?;
            let acquire = match current {
                S::Reserved => {
                    let Some(to) = assign_to else { return Err(Error::unauthorized()) };
                    if doc.assigned_to.as_ref() == Some(to) {
                        return Err(Error::NoChangeRequired);
                    }
                    true
                }
                S::Discovery => true,
                S::Available | S::InService => false,
                _ => return Err(invalid()),
            };
            authorize(doc, assign_to, ctx)?;
            if let Some(to) = assign_to {
                doc.push_reserve_history(to);
            }
            move_to(doc, target, assign_to);
            Ok(acquire)
        }
        S::InService => match current {
            S::InService => {
                if assign_to == doc.assigned_to.as_ref() {
                    return Ok(false);
                }
                authorize(doc, assign_to, ctx)?;
                move_to(doc, target, assign_to);
                Ok(false)
            }
            S::Discovery => {
                mdn_in_service(doc)?;
                authorize(doc, assign_to, ctx)?;
                move_to(doc, target, assign_to);
                Ok(true)
            }
            S::PortIn => {
                mdn_in_service(doc)?;
                authorize(doc, assign_to, ctx)?;
                move_to(doc, target, assign_to);
                Ok(false)
            }
            // "Everyone MUST be allowed to buy available"; external carriers not contacted.
            S::Available | S::Aging => {
                mdn_in_service(doc)?;
                move_to(doc, target, assign_to);
                Ok(false)
            }
            S::Reserved => {
                mdn_in_service(doc)?;
                let ok = auth::is_authorized(
                    ctx.accounts,
                    ctx.auth_by,
                    doc.assigned_to.as_ref(),
                    assign_to,
                ) || auth::is_reserved_from_parent(
                    ctx.accounts,
                    ctx.auth_by,
                    doc.state,
                    doc.assigned_to.as_ref(),
                );
                if !ok {
                    return Err(Error::unauthorized());
                }
                move_to(doc, target, assign_to);
                Ok(false)
            }
            _ => Err(invalid()),
        },
        S::Available => {
            mdn_guard(doc)?;
            if current != S::Available {
                return Err(invalid());
            }
            authorize(doc, assign_to, ctx)?;
            move_to(doc, target, assign_to);
            Ok(false)
        }
        S::Aging => {
            mdn_guard(doc)?;
            if !matches!(current, S::Aging | S::Released | S::Available) {
                return Err(invalid());
            }
            move_to(doc, target, assign_to);
            Ok(false)
        }
        S::PortIn => {
            mdn_guard(doc)?;
            if current != S::PortIn {
                return Err(invalid());
            }
            move_to(doc, target, assign_to);
            Ok(false)
        }
        S::Released | S::PortOut | S::Deleted | S::Discovery => {
            Err(Error::InvalidStateTransition { from: None, to: None })
        }
    }
}
