// The arm_ffa bus: partitions as devices, client drivers bound to them by UUID.

import { type EndpointId, isNilUuid, parseUuid, type Uuid, uuidEquals } from '../proto/ffa/index.js';
import { FfaDriverError } from './errno.js';

export interface FfaDevice {
  /** Bus-unique number (the kernel's IDA, from 1); the device is named arm-ffa-<id>. */
  readonly id: number;
  readonly name: string;
  /** The partition's endpoint ID. */
  readonly vmId: EndpointId;
  uuid: Uuid;
  readonly properties: number;
  /** Direct messages use the SMC32 IDs (AArch32 partition, or forced by mode_32bit_set). */
  mode32bit: boolean;
  driver?: FfaClientDriver;
  drvdata?: unknown;
}

export interface FfaClientDriver {
  readonly name: string;
  /** UUIDs this driver serves; at least one. */
  readonly idTable: readonly string[];
  probe(dev: FfaDevice): void | Promise<void>;
  remove?(dev: FfaDevice): void | Promise<void>;
}

/**
 * v1.0 partitions come without UUIDs. As the kernel's bus notifier does, a device with a null UUID
 * asks the SPMC which partitions serve the driver's first UUID and takes it if its ID is among them.
 */
export type UuidResolver = (dev: FfaDevice, uuid: Uuid) => Promise<boolean>;

export class FfaBus {
  private readonly devs: FfaDevice[] = [];
  private readonly drivers: FfaClientDriver[] = [];
  private nextId = 1;
  uuidResolver?: UuidResolver;

  devices(): readonly FfaDevice[] {
    return this.devs;
  }

  async registerDevice(init: { vmId: EndpointId; uuid: Uuid; properties: number; mode32bit: boolean }): Promise<FfaDevice> {
    const id = this.nextId++;
    const dev: FfaDevice = { ...init, id, name: `arm-ffa-${id}` };
    this.devs.push(dev);
    for (const drv of this.drivers) if (await this.tryBind(dev, drv)) break;
    return dev;
  }

  async registerDriver(drv: FfaClientDriver): Promise<void> {
    if (typeof drv.probe !== 'function' || drv.idTable.length === 0) {
      throw new FfaDriverError('EINVAL', `driver ${drv.name} needs a probe and an id table`);
    }
    for (const u of drv.idTable) parseUuid(u); // a malformed entry is the caller's bug: throw now
    this.drivers.push(drv);
    for (const dev of this.devs) if (!dev.driver) await this.tryBind(dev, drv);
  }

  async unregisterDriver(drv: FfaClientDriver): Promise<void> {
    const i = this.drivers.indexOf(drv);
    if (i < 0) return;
    this.drivers.splice(i, 1);
    for (const dev of this.devs) if (dev.driver === drv) await this.unbind(dev);
  }

  /** Remove every device (driver exit): unbind first, newest device first. */
  async unregisterAll(): Promise<void> {
    for (const dev of [...this.devs].reverse()) if (dev.driver) await this.unbind(dev);
    this.devs.length = 0;
  }

  private matches(dev: FfaDevice, drv: FfaClientDriver): boolean {
    // A null UUID matches every driver; probing then tries to resolve it.
    return isNilUuid(dev.uuid) || drv.idTable.some((u) => uuidEquals(parseUuid(u), dev.uuid));
  }

  private async tryBind(dev: FfaDevice, drv: FfaClientDriver): Promise<boolean> {
    if (!this.matches(dev, drv)) return false;
    if (isNilUuid(dev.uuid) && this.uuidResolver) {
      const wanted = parseUuid(drv.idTable[0]!);
      if (await this.uuidResolver(dev, wanted)) dev.uuid = wanted;
    }
    if (isNilUuid(dev.uuid)) return false; // -ENODEV from ffa_device_probe
    dev.driver = drv;
    try {
      await drv.probe(dev);
    } catch (e) {
      dev.driver = undefined;
      throw e;
    }
    return true;
  }

  private async unbind(dev: FfaDevice): Promise<void> {
    const drv = dev.driver;
    dev.driver = undefined;
    await drv?.remove?.(dev);
  }
}
