//! ListGroups and DescribeGroups. Each broker lists the groups it coordinates; DescribeGroups
//! describes classic groups only (a consumer group reads as a dead one, as in Kafka).

use sansa::protocol::messages::describe_groups::response::{DescribedGroup, DescribedGroupMember};
use sansa::protocol::messages::list_groups::response::ListedGroup;
use sansa::protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest, ListGroupsResponse};
use sansa::protocol::{ErrorCode, GroupId, StrBytes};

use super::classic::ClassicState;
use super::{coordinator_error, Group};
use crate::fake_cluster::find_coordinator::coordinator_for;
use crate::fake_cluster::{Ctx, FakeCluster};

const CLIENT_HOST: &str = "/127.0.0.1";

pub(crate) fn list(cluster: &FakeCluster, ctx: Ctx, req: ListGroupsRequest) -> ListGroupsResponse {
    let v = ctx.version;
    let states: Vec<String> =
        if v >= 4 { req.states_filter.iter().map(|s| s.trim().to_lowercase()).collect() } else { Vec::new() };
    let types: Vec<String> =
        if v >= 5 { req.types_filter.iter().map(|s| s.trim().to_lowercase()).collect() } else { Vec::new() };
    let mut groups = Vec::new();
    for (id, g) in &cluster.groups.groups {
        if coordinator_for(cluster, id) != Some(ctx.broker) {
            continue;
        }
        let (state, protocol_type, kind) = match g {
            Group::Classic(c) if c.state == ClassicState::Dead => continue,
            Group::Classic(c) => (c.state.name(), c.protocol_type.clone().unwrap_or_default(), "classic"),
            Group::Consumer(c) => (c.state_name(), "consumer".to_string(), "consumer"),
        };
        if !states.is_empty() && !states.contains(&state.to_lowercase()) {
            continue;
        }
        if !types.is_empty() && !types.iter().any(|t| t == kind) {
            continue;
        }
        let mut lg = ListedGroup::default()
            .with_group_id(GroupId::from(id.as_str()))
            .with_protocol_type(StrBytes::from(protocol_type));
        if v >= 4 {
            lg.group_state = StrBytes::from(state);
        }
        if v >= 5 {
            lg.group_type = StrBytes::from(kind);
        }
        groups.push(lg);
    }
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) fn describe(cluster: &FakeCluster, ctx: Ctx, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let v = ctx.version;
    let groups = req
        .groups
        .into_iter()
        .map(|gid| {
            let mut d = DescribedGroup::default().with_group_id(gid.clone());
            if let Some(code) = coordinator_error(cluster, ctx.broker, &gid) {
                d.error_code = code;
                return d;
            }
            let Some(Group::Classic(g)) = cluster.groups.groups.get(gid.as_str()) else {
                d.group_state = StrBytes::from(ClassicState::Dead.name());
                if v >= 6 {
                    d.error_code = ErrorCode::GroupIdNotFound;
                    d.error_message = Some(StrBytes::from(format!("Group {gid} not found.")));
                }
                return d;
            };
            let stable = g.state == ClassicState::Stable;
            let protocol = g.protocol_name.clone().unwrap_or_default();
            d.group_state = StrBytes::from(g.state.name());
            d.protocol_type = StrBytes::from(g.protocol_type.clone().unwrap_or_default());
            if stable {
                d.protocol_data = StrBytes::from(protocol.as_str());
            }
            d.members = g
                .members
                .values()
                .map(|m| {
                    let mut dm = DescribedGroupMember::default()
                        .with_member_id(StrBytes::from(m.id.as_str()))
                        .with_client_id(StrBytes::from(m.client_id.as_str()))
                        .with_client_host(StrBytes::from(CLIENT_HOST));
                    if v >= 4 {
                        dm.group_instance_id = m.instance_id.as_deref().map(StrBytes::from);
                    }
                    if stable {
                        dm.member_metadata = m
                            .protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default();
                        dm.member_assignment = m.assignment.clone();
                    }
                    dm
                })
                .collect();
            d
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
