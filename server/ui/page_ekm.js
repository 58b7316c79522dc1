// page_ekm.js - Azure Managed HSM EKM: the URL base and each EKM-addressable
// key's URL (what Managed HSM calls), the allowed client names, the client
// CA in use, and an `az` line to register a key.
import { h, alertBox, showError, table, copyBlock, select, field, fmtTime } from './dom.js';
import { api, allPages } from './api.js';

const EKM_NAME = /^[A-Za-z0-9-]{1,64}$/;

export function azLine(key, info) {
  const kty = key.type === 'RSA' ? 'RSA-HSM' : 'oct-HSM';
  return [
    `az keyvault key create --hsm-name <your-managed-hsm> --name ${key.name} \\`,
    `  --kty ${kty} --ops wrapKey unwrapKey \\`,
    `  --external-key-id ${key.name}`,
    `# Managed HSM calls: ${info.url_base}/${key.name}`,
  ].join('\n');
}

export async function render(el, ctx) {
  const err = alertBox();
  el.append(err);
  let info;
  try {
    info = await api('GET', '/ekm');
  } catch (e) {
    showError(err, e);
    return;
  }
  if (!ctx.isCurrent()) return;
  el.append(h('section', { 'aria-labelledby': 'ekm-conn' }, h('h2', { id: 'ekm-conn' }, 'Connection'),
    info.enabled ? null : h('p', { class: 'banner warn' }, 'The EKM API is disabled ([azure_ekm_config] azure_ekm_enable = false): Managed HSM cannot call this appliance.'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'URL base'), h('dd', {}, h('code', { 'data-field': 'url_base' }, info.url_base || '—')),
      h('dt', {}, 'Path prefix'), h('dd', {}, h('code', {}, info.path_prefix || '(none)')),
      h('dt', {}, 'Public host'), h('dd', {}, h('code', {}, info.public_host || '—')),
      h('dt', {}, 'Client certificates'), h('dd', {}, info.client_auth ? 'required (mutual TLS)' : 'NOT checked (azure_ekm_disable_client_auth: tests only)'),
      h('dt', {}, 'Allowed client names'), h('dd', {}, (info.client_cns || []).length ? h('ul', {}, info.client_cns.map((c) => h('li', {}, h('code', {}, c)))) : 'any CN the client CA issued'),
      h('dt', {}, 'Rate limit'), h('dd', {}, info.rate_limit ? `${info.rate_limit} requests/s` : 'none'))));
  el.append(h('section', { 'aria-labelledby': 'ekm-ca' }, h('h2', { id: 'ekm-ca' }, 'Client CA in use'),
    (info.client_ca || []).length
      ? table(null, ['Subject', 'Issuer', 'SHA-256', 'Not after'], info.client_ca.map((c) => [c.subject, c.issuer, h('code', { class: 'hash' }, c.sha256), fmtTime(c.not_after)]))
      : h('p', {}, 'No client CA is configured ([tls] clients_ca_cert_file).')));

  const keysSec = h('section', { 'aria-labelledby': 'ekm-keys' }, h('h2', { id: 'ekm-keys' }, 'Keys Managed HSM can use'));
  el.append(keysSec);
  let keys;
  try {
    keys = (await allPages('/keys', { limit: 1000 }, 'keys', 'cursor')).filter((k) => EKM_NAME.test(k.name) && k.state !== 'destroyed');
  } catch (e) {
    const box = alertBox();
    keysSec.append(box);
    showError(box, e);
    return;
  }
  if (!ctx.isCurrent()) return;
  if (!keys.length) {
    keysSec.append(h('p', {}, 'No key has an EKM-addressable name (1-64 of A-Z a-z 0-9 -).'));
    return;
  }
  const opted = (k) => k.rules && k.rules.ekm && (k.rules.ekm.client_cns || k.rules.ekm.path_prefixes);
  keysSec.append(table(null, ['Key', 'Type', 'State', 'Opted in to EKM', 'Key URL'],
    keys.map((k) => [k.name, `${k.type} ${k.size}`, k.state, opted(k) ? 'yes' : 'no (set EKM client names on the Keys page)', h('code', { class: 'url' }, `${info.url_base}/${k.name}`)])));
  const pick = field('Key for the az line', select(keys.map((k) => k.name), keys[0].name));
  const holder = h('div', {});
  const draw = () => {
    const k = keys.find((x) => x.name === pick.input.value);
    holder.replaceChildren(copyBlock(azLine(k, info), 'az command'));
  };
  pick.input.addEventListener('change', draw);
  draw();
  keysSec.append(h('h3', {}, 'Register a key in Managed HSM'), pick.wrap, holder,
    h('p', { class: 'hint' }, 'What this line assumes: the Managed HSM already has its EKM connection to this appliance (host ',
      h('code', {}, info.public_host || '?'), ', path prefix ', h('code', {}, info.path_prefix || 'none'),
      ', set with the preview command group az keyvault ekm-connection); Managed HSM external keys (service version 2026-01-01-preview) whose external key id is the key name here; and an Azure CLI whose az keyvault key create takes that id as --external-key-id. That option name was not verified against a released CLI: check az keyvault key create --help. Replace <your-managed-hsm>.'));
}
